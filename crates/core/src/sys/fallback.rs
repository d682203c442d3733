//! Newer race-free system calls, probed once, with their `O_PATH` fallbacks.
//!
//! `fchmodat2(AT_SYMLINK_NOFOLLOW)` arrived in Linux 6.6 and `getxattrat`/`setxattrat` in
//! 6.13. On older kernels the entry is pinned with `O_PATH | O_NOFOLLOW`, checked not to be a
//! symlink where that matters, and changed through `/proc/self/fd/N`, which names the pinned
//! inode itself: no path is resolved again, so nothing can be swapped in between.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use std::ffi::{CStr, CString};
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const NATIVE: u8 = 1;
const FALLBACK: u8 = 2;

static FCHMODAT2: AtomicU8 = AtomicU8::new(UNKNOWN);
static XATTRAT: AtomicU8 = AtomicU8::new(UNKNOWN);
static OPENAT2: AtomicU8 = AtomicU8::new(UNKNOWN);

/// x86_64 and aarch64 share these numbers (the generic syscall table).
const SYS_FCHMODAT2: libc::c_long = 452;
pub(super) const SYS_SETXATTRAT: libc::c_long = 463;
pub(super) const SYS_GETXATTRAT: libc::c_long = 464;

/// Which system calls are in use, for reports and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fallbacks {
    /// `chmod` goes through `/proc/self/fd` because `fchmodat2` is missing (before Linux 6.6).
    pub chmod_via_proc: bool,
    /// Extended attributes go through `/proc/self/fd` because `getxattrat`/`setxattrat` are
    /// missing (before Linux 6.13).
    pub xattr_via_proc: bool,
}

/// Makes every later call take the `O_PATH` + `/proc/self/fd` route, as on a kernel before
/// 6.6. Set also by `VOLSEC_FORCE_FALLBACK=1` in the environment. Both routes give the same
/// results; this exists so the older route stays tested.
pub fn force_fallbacks() {
    FCHMODAT2.store(FALLBACK, Ordering::Relaxed);
    XATTRAT.store(FALLBACK, Ordering::Relaxed);
    OPENAT2.store(FALLBACK, Ordering::Relaxed);
}

impl Fallbacks {
    /// What the calls made so far have settled on (a route not yet probed counts as native).
    pub fn current() -> Fallbacks {
        Fallbacks {
            chmod_via_proc: FCHMODAT2.load(Ordering::Relaxed) == FALLBACK,
            xattr_via_proc: XATTRAT.load(Ordering::Relaxed) == FALLBACK,
        }
    }
}

/// Returns whether the native call should be tried.
pub(super) fn native(flag: &AtomicU8) -> bool {
    match flag.load(Ordering::Relaxed) {
        NATIVE => true,
        FALLBACK => false,
        _ => {
            if std::env::var_os("VOLSEC_FORCE_FALLBACK").is_some_and(|v| v == "1") {
                force_fallbacks();
                false
            } else {
                true
            }
        }
    }
}

/// Records the outcome of a native call: `ENOSYS` switches to the fallback for good.
pub(super) fn settle<T>(flag: &AtomicU8, res: io::Result<T>) -> Option<io::Result<T>> {
    match res {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            flag.store(FALLBACK, Ordering::Relaxed);
            None
        }
        other => {
            flag.store(NATIVE, Ordering::Relaxed);
            Some(other)
        }
    }
}

pub(super) fn xattrat_flag() -> &'static AtomicU8 {
    &XATTRAT
}

pub(super) fn chmod_at_nofollow(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    if let Some(res) = fchmodat2(dir, name, mode, libc::AT_SYMLINK_NOFOLLOW) {
        return res;
    }
    let pinned = pin(dir, name)?;
    if super::stat_fd(pinned.as_fd())?.kind == super::FileKind::Symlink {
        // What fchmodat2 answers for a symlink: it has no mode of its own.
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    chmod_proc(&pinned, mode)
}

/// chmod of the inode an `O_PATH` descriptor pins (the caller knows it is no symlink).
pub(super) fn chmod_pinned(pinned: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    if let Some(res) = fchmodat2(pinned, c"", mode, libc::AT_EMPTY_PATH) {
        return res;
    }
    chmod_proc(&pinned, mode)
}

/// `fchmodat2`, or `None` when the kernel lacks it (or the fallback is forced).
fn fchmodat2(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mode: u32,
    flags: libc::c_int,
) -> Option<io::Result<()>> {
    if !native(&FCHMODAT2) {
        return None;
    }
    // SAFETY: plain syscall with a valid fd and a NUL-terminated name.
    let ret = unsafe {
        libc::syscall(
            SYS_FCHMODAT2,
            dir.as_raw_fd(),
            name.as_ptr(),
            mode as libc::c_uint,
            flags,
        )
    };
    settle(&FCHMODAT2, super::cvt(ret).map(drop))
}

fn chmod_proc(pinned: &impl AsRawFd, mode: u32) -> io::Result<()> {
    through_proc(pinned, |path| {
        rustix::fs::chmod(path, Mode::from_raw_mode(mode))
    })
}

/// Pins `name` inside `dir` without following or opening it (`O_PATH | O_NOFOLLOW`).
pub fn pin(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(io::Error::from)
}

/// Pins `name` inside `dir` as [`pin`] does, but only if it lies on the mount `mount` (the
/// id [`super::stat_fd`] gives for `dir`): a name something is mounted over fails with
/// `EXDEV`, and whatever is mounted over it afterwards, the pin keeps the inode of `dir`'s
/// filesystem. `openat2` with `RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS` (Linux 5.6); before
/// that, or where a seccomp filter refuses it, `openat` and the pin's own mount id.
pub fn pin_beneath(dir: BorrowedFd<'_>, name: &CStr, mount: u64) -> io::Result<OwnedFd> {
    use rustix::fs::ResolveFlags;
    if native(&OPENAT2) {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let resolve = ResolveFlags::NO_XDEV | ResolveFlags::NO_SYMLINKS;
        let res = rustix::fs::openat2(dir, name, flags, Mode::empty(), resolve);
        if let Some(res) = settle(&OPENAT2, res.map_err(io::Error::from)) {
            return res;
        }
    }
    let pinned = pin(dir, name)?;
    if super::stat_fd(pinned.as_fd())?.mnt_id != mount {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    Ok(pinned)
}

/// `/proc/self/fd/N`: resolves to the inode `fd` pins, whatever is at its path now.
fn proc_path(fd: &impl AsRawFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

/// The path `fd` was opened by, as the kernel has it now (the `/proc/self/fd/N` link).
pub fn path_of(fd: &impl AsRawFd) -> io::Result<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    std::fs::read_link(std::ffi::OsStr::from_bytes(proc_path(fd).to_bytes()))
}

/// Runs `op` on the `/proc/self/fd/N` path of `fd`. The descriptor keeps its inode alive,
/// so `ENOENT` there never means the entry vanished (which a pass would pass over): it
/// means `/proc` is not mounted, and is reported as the failure it is.
pub(super) fn through_proc<T>(
    fd: &impl AsRawFd,
    op: impl FnOnce(&CStr) -> rustix::io::Result<T>,
) -> io::Result<T> {
    let path = proc_path(fd);
    op(&path).map_err(|e| match e {
        rustix::io::Errno::NOENT => io::Error::other(format!(
            "{} is missing: the route for kernels without the *at calls goes through /proc, which must be mounted",
            path.to_string_lossy()
        )),
        e => io::Error::from(e),
    })
}
