//! Which filesystems a case runs on, and entries and snapshots of a tree on them.

use super::{all_paths, ctime_ns, Mounted};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The filesystems a case body `fn(Fs)` runs on, one test each ([`on_tmpfs_and_ext4`]).
#[derive(Clone, Copy, Debug)]
pub enum Fs {
    Tmpfs,
    Ext4,
}

impl Fs {
    /// A fresh filesystem of this kind; an ext4 image is `ext4_mib` MiB.
    pub fn mount(self, ext4_mib: u64) -> Mounted {
        match self {
            Fs::Tmpfs => Mounted::tmpfs(),
            Fs::Ext4 => Mounted::ext4(ext4_mib),
        }
    }
}

/// One test per filesystem for each case body `fn(Fs)`: `mod CASE { fn tmpfs(); fn ext4() }`.
macro_rules! on_tmpfs_and_ext4 {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[test]
                fn tmpfs() {
                    super::$case($crate::common::Fs::Tmpfs)
                }
                #[test]
                fn ext4() {
                    super::$case($crate::common::Fs::Ext4)
                }
            }
        )*
    };
}
pub(crate) use on_tmpfs_and_ext4;

/// Whether the running kernel knows the filesystem type `name` (`/proc/filesystems`).
pub fn kernel_has(name: &str) -> bool {
    let known = std::fs::read_to_string("/proc/filesystems").expect("/proc/filesystems");
    known.split_whitespace().any(|fs| fs == name)
}

/// A filesystem that cannot store xattrs: a loop-mounted vfat image when the kernel has
/// vfat, else ramfs (which has no xattr handlers either, and is always built in). Returns
/// the mount and which of the two it is, and says which on stderr.
pub fn mounted_without_xattrs() -> (Mounted, &'static str) {
    if kernel_has("vfat") {
        eprintln!("filesystem without xattrs: vfat");
        return (Mounted::vfat(32), "vfat");
    }
    eprintln!("this kernel has no vfat driver: filesystem without xattrs: ramfs instead");
    (Mounted::ramfs(), "ramfs")
}

/// A FIFO of exactly `mode` (not narrowed by the umask).
pub fn mkfifo(p: &Path, mode: u32) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(mode),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", p.display()));
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// (uid, gid, mode, ctime) of an entry.
pub type Snapshot = BTreeMap<PathBuf, (u32, u32, u32, i128)>;

/// uid, gid, mode and ctime of everything under `root`, not following symlinks.
pub fn snapshot(root: &Path) -> Snapshot {
    all_paths(root)
        .into_iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let c = ctime_ns(&p);
            (p, (m.uid(), m.gid(), m.mode(), c))
        })
        .collect()
}
