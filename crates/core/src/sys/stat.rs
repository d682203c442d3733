//! One `statx` per inode: type, mode, owner, identity and the mount it lives on.
//!
//! The mount id (`STATX_MNT_ID`, Linux 5.8) is what tells a nested mount point apart, bind
//! mounts of the same filesystem included, which `st_dev` alone cannot.

use rustix::fd::BorrowedFd;
use rustix::fs::{AtFlags, StatxFlags};
use std::ffi::CStr;
use std::io;

/// The kind of a directory entry, from its `st_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file (also anything `st_mode` does not name otherwise).
    File,
    /// A symbolic link: never followed, never chmodded.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix domain socket.
    Socket,
    /// A block device node.
    BlockDevice,
    /// A character device node.
    CharDevice,
}

impl FileKind {
    fn from_mode(mode: u32) -> FileKind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFBLK => FileKind::BlockDevice,
            libc::S_IFCHR => FileKind::CharDevice,
            _ => FileKind::File,
        }
    }
}

/// What the passes need to know about an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The file type, from `st_mode & S_IFMT`.
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 07777`).
    pub perm: u32,
    /// The owning user.
    pub uid: u32,
    /// The owning group: what the fsGroup pass changes.
    pub gid: u32,
    /// The device the inode lives on.
    pub dev: u64,
    /// The inode number; with `dev`, the inode's identity.
    pub ino: u64,
    /// The id of the mount the inode was reached through (before Linux 5.8, its device).
    pub mnt_id: u64,
    /// Names the inode has (`st_nlink`): above 1 on a non-directory, a hard link whose other
    /// names may lie outside the volume.
    pub nlink: u32,
}

impl Stat {
    /// Whether the entry is a directory (gets the setgid and execute bits, and is walked into).
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
}

const WANTED: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::UID)
    .union(StatxFlags::GID)
    .union(StatxFlags::INO)
    .union(StatxFlags::NLINK)
    .union(StatxFlags::MNT_ID);

fn from_statx(x: rustix::fs::Statx) -> Stat {
    let mode = u32::from(x.stx_mode);
    Stat {
        kind: FileKind::from_mode(mode),
        perm: mode & 0o7777,
        uid: x.stx_uid,
        gid: x.stx_gid,
        dev: rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor),
        ino: x.stx_ino,
        mnt_id: mount_of(&x),
        nlink: x.stx_nlink,
    }
}

/// The mount id, or on kernels before 5.8 (no `STATX_MNT_ID`) the device number: every
/// entry is described the same way in one run, so comparing with the root's still tells
/// another filesystem apart (a bind mount of the same one then goes unnoticed).
fn mount_of(x: &rustix::fs::Statx) -> u64 {
    if StatxFlags::from_bits_retain(x.stx_mask).contains(StatxFlags::MNT_ID) {
        x.stx_mnt_id
    } else {
        rustix::fs::makedev(x.stx_dev_major, x.stx_dev_minor)
    }
}

/// `statx(dir, name, AT_SYMLINK_NOFOLLOW)`: a symlink is described, not its target.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, WANTED)
        .map(from_statx)
        .map_err(io::Error::from)
}

/// `statx(fd, "", AT_EMPTY_PATH)`: the inode the descriptor holds.
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, WANTED)
        .map(from_statx)
        .map_err(io::Error::from)
}
