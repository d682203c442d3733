//! Thin, typed wrappers over the Linux `*at` system calls the passes are built from.
//!
//! Every operation here is relative to a directory file descriptor and never follows a
//! symlink: the walker opens each directory from its parent with `O_NOFOLLOW`, and every
//! change is either made on a descriptor volsec opened itself or by name inside such a
//! directory with `AT_SYMLINK_NOFOLLOW` semantics. A container that swaps a directory for a
//! symlink while volsec runs can therefore never redirect a change outside the volume.
//!
//! Where the kernel offers the race-free call only on newer versions (`fchmodat2` in 6.6,
//! `getxattrat`/`setxattrat` in 6.13), the wrapper probes once and falls back to pinning the
//! entry with `O_PATH | O_NOFOLLOW` and going through `/proc/self/fd/N`, which resolves to
//! the pinned inode itself and so is just as safe, only slower.

mod dir;
mod fallback;
mod mountinfo;
mod namespace;
mod open;
mod process;
mod stat;
mod xattr;

pub use dir::{DirEntry, DirReader, EntryType};
pub use fallback::{force_fallbacks, path_of, pin, pin_beneath, Fallbacks};
pub use mountinfo::{mounts, mounts_below, parse_mountinfo, thread_mounts_below, MountInfo};
pub use namespace::in_private_mounts;
pub use open::{open_dir_at, open_root, raise_fd_limit};
pub use process::{adopt_listen_fd, default_sigpipe, flag_interrupts, home_of, interrupted};
pub use stat::{stat_at, stat_fd, FileKind, Stat};
pub use xattr::{get_xattr, set_xattr};

use rustix::fd::BorrowedFd;
use std::ffi::CStr;
use std::io;

/// What a change is made to: a name inside an open directory (never followed if it is a
/// symlink), or a directory volsec opened itself.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// `name` inside the directory `dir`, not followed.
    At(BorrowedFd<'a>, &'a CStr),
    /// The open file itself.
    Fd(BorrowedFd<'a>),
    /// The inode an `O_PATH | O_NOFOLLOW` descriptor pins (see [`pin`]): whatever is
    /// renamed over its name afterwards, this is the inode that changes.
    Pinned(BorrowedFd<'a>),
}

/// Sets the group of `target` and, when `uid` is given, its owner (`chown(path, uid or -1,
/// gid)`). A symlink gets them itself.
pub fn chown(target: Target<'_>, uid: Option<u32>, gid: u32) -> io::Result<()> {
    let uid = uid.map(rustix::fs::Uid::from_raw);
    let gid = Some(rustix::fs::Gid::from_raw(gid));
    match target {
        Target::At(dir, name) => {
            rustix::fs::chownat(dir, name, uid, gid, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        }
        Target::Fd(fd) => rustix::fs::fchown(fd, uid, gid),
        Target::Pinned(fd) => {
            rustix::fs::chownat(fd, c"", uid, gid, rustix::fs::AtFlags::EMPTY_PATH)
        }
    }
    .map_err(io::Error::from)
}

/// Sets the permission bits (including setuid, setgid and sticky) of `target`, which must not
/// be a symlink: Linux symlinks have no mode of their own, and `chmod` would follow them.
pub fn chmod(target: Target<'_>, mode: u32) -> io::Result<()> {
    match target {
        Target::At(dir, name) => fallback::chmod_at_nofollow(dir, name, mode),
        Target::Fd(fd) => {
            rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(mode)).map_err(io::Error::from)
        }
        Target::Pinned(fd) => fallback::chmod_pinned(fd, mode),
    }
}

/// Converts a `-1`/errno return of a raw `syscall` into `io::Result`.
fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
