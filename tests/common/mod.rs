//! Real filesystems for the tests: tmpfs and loop-mounted ext4 / vfat images, created and
//! torn down by each test. The tests run as root (CI does); without root they fail with a
//! message saying so, never pass silently.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

mod attack;
mod csi;
mod fixtures;
mod fs;
mod http;
mod run;
pub use attack::*;
pub use csi::*;
pub use fixtures::*;
pub use fs::*;
pub use http::*;
pub use run::*;

/// Fails the test with a clear reason when not root: mounting needs it.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test mounts real filesystems and changes ownership: run it as root (CI does)"
    );
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A filesystem mounted on a fresh temporary directory, unmounted when dropped.
pub struct Mounted {
    dir: tempfile::TempDir,
    image: Option<PathBuf>,
}

impl Mounted {
    /// A fresh tmpfs.
    pub fn tmpfs() -> Mounted {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2g,mode=0755", "volsec-test"])
            .arg(dir.path()));
        Mounted { dir, image: None }
    }

    /// A fresh ext4 image of `mib` MiB, loop-mounted.
    pub fn ext4(mib: u64) -> Mounted {
        Mounted::image("ext4", mib, &["mkfs.ext4", "-q", "-F"])
    }

    /// A fresh ramfs: no xattr handlers, and always built into the kernel.
    pub fn ramfs() -> Mounted {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        run(Command::new("mount")
            .args(["-t", "ramfs", "volsec-ramfs"])
            .arg(dir.path()));
        Mounted { dir, image: None }
    }

    /// A fresh vfat image (a filesystem without xattrs, owners or modes of its own). Not
    /// every kernel has vfat: [`mounted_without_xattrs`] falls back to ramfs.
    pub fn vfat(mib: u64) -> Mounted {
        Mounted::image("vfat", mib, &["mkfs.vfat"])
    }

    fn image(kind: &str, mib: u64, mkfs: &[&str]) -> Mounted {
        require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        let image = std::env::temp_dir().join(format!(
            "volsec-test-{}-{}.{kind}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        ));
        let file = std::fs::File::create(&image).expect("image file");
        file.set_len(mib << 20).expect("size image");
        drop(file);
        run(Command::new(mkfs[0]).args(&mkfs[1..]).arg(&image));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir.path()));
        Mounted {
            dir,
            image: Some(image),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A directory `name` inside the mount, created with mode 0755.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
    }
}

/// Mounts another tmpfs at `at` (a nested mount point inside a volume).
pub fn mount_tmpfs_at(at: &Path) {
    std::fs::create_dir_all(at).expect("mkdir");
    run(Command::new("mount")
        .args(["-t", "tmpfs", "volsec-nested"])
        .arg(at));
}

pub fn umount(at: &Path) {
    let _ = Command::new("umount").arg("-l").arg(at).status();
}

/// The `volsec` binary built for this test run.
pub fn volsec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_volsec"))
}

/// `(gid, mode & 07777)` of `path`, not following a symlink.
pub fn gid_mode(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.gid(), m.mode() & 0o7777)
}

/// ctime of `path` in nanoseconds, not following a symlink.
pub fn ctime_ns(path: &Path) -> i128 {
    let m = std::fs::symlink_metadata(path).expect("lstat");
    m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128
}

pub fn write_file(path: &Path, mode: u32) {
    std::fs::write(path, b"x").expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every path under `root` (not following symlinks), sorted, the root included.
pub fn all_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                out.push(e.expect("entry").path());
            }
        }
        i += 1;
    }
    out.sort();
    out
}

/// `chattr +i` for the life of a test (an entry even root cannot change: EPERM), undone on
/// drop so the image can go.
pub struct Immutable(PathBuf);

impl Immutable {
    pub fn set(path: &Path) -> Immutable {
        succeeds(Command::new("chattr").arg("+i").arg(path));
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}
