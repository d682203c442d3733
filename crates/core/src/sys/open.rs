//! Opening directories without following symlinks, and the descriptor budget.

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags, CWD};
use std::ffi::CStr;
use std::io;
use std::path::Path;

/// Directories are opened read-only, close-on-exec, and never through a symlink.
/// `O_DIRECTORY` makes the kernel refuse anything else before it is opened, so a FIFO or a
/// device swapped in under a directory's name is never opened (and never blocks);
/// `O_NONBLOCK` is a second guard for the same.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK);

/// `openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)`.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(io::Error::from)
}

/// Opens the root of a volume refusing a symlink at **any** component of `path`
/// (`openat2` with `RESOLVE_NO_SYMLINKS`; on kernels before 5.6, one `O_NOFOLLOW` open per
/// component). A symlink anywhere on the way fails with `ELOOP`.
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    match rustix::fs::openat2(
        CWD,
        path,
        DIR_FLAGS,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    ) {
        Err(rustix::io::Errno::NOSYS) => open_by_components(path),
        other => other.map_err(io::Error::from),
    }
}

fn open_by_components(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let start = if path.is_absolute() { "/" } else { "." };
    let mut fd = rustix::fs::openat(CWD, start, DIR_FLAGS, Mode::empty())?;
    for part in path.components() {
        let name = match part {
            std::path::Component::Normal(n) => n.as_bytes(),
            std::path::Component::ParentDir => b"..",
            _ => continue,
        };
        let name = std::ffi::CString::new(name)?;
        fd = open_dir_at(rustix::fd::AsFd::as_fd(&fd), &name)?;
    }
    Ok(fd)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit: a deep
/// tree keeps one descriptor open per level being walked.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(1 << 20)
}
