//! Where benchmark trees live: the filesystem under test.
//!
//! The numbers only mean something for a named filesystem. By default the trees go on a
//! RAM-backed ext4 (an image in `/dev/shm`, loop-mounted; needs root), so that a benchmark
//! measures the kernel's metadata path and not a disk; without root they fall back to a
//! tmpfs directory in `/dev/shm`, and say so. `--scratch DIR` measures any filesystem
//! already mounted, and `--fs ext4|xfs|tmpfs` makes a fresh one on request.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A filesystem kind the harness can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    /// An ext4 image in /dev/shm, loop-mounted.
    Ext4,
    /// An xfs image in /dev/shm, loop-mounted (needs mkfs.xfs).
    Xfs,
    /// A fresh tmpfs mount.
    Tmpfs,
    /// A network-like volume: a FUSE passthrough of a fresh tmpfs that answers every
    /// request after this latency, many requests at once ([`super::slow_fs`]).
    Slow(std::time::Duration),
}

impl FsKind {
    /// `ext4`, `xfs`, `tmpfs` or `slow:LATENCY` (`slow:500us`, `slow:2ms`), as `--fs`
    /// takes it.
    pub fn parse(s: &str) -> Result<FsKind, String> {
        match s {
            "ext4" => Ok(FsKind::Ext4),
            "xfs" => Ok(FsKind::Xfs),
            "tmpfs" => Ok(FsKind::Tmpfs),
            _ => match s.strip_prefix("slow:") {
                Some(latency) => super::slow_fs::parse_latency(latency).map(FsKind::Slow),
                None => Err(format!(
                    "{s:?}: one of ext4, xfs, tmpfs, slow:LATENCY (e.g. slow:500us)"
                )),
            },
        }
    }

    /// Whether the trees go on an ext4 or xfs image (which `--image-size` sizes).
    pub fn is_image(&self) -> bool {
        matches!(self, FsKind::Ext4 | FsKind::Xfs)
    }
}

impl std::fmt::Display for FsKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsKind::Ext4 => f.write_str("ext4"),
            FsKind::Xfs => f.write_str("xfs"),
            FsKind::Tmpfs => f.write_str("tmpfs"),
            FsKind::Slow(d) => write!(f, "slow:{}", super::slow_fs::latency_name(*d)),
        }
    }
}

/// The default size of a scratch ext4 or xfs image (sparse; see [`Scratch::create`]).
pub const IMAGE_BYTES: u64 = 128 << 30;

/// What an image needs per inode of the tree, at most: its share of the inode tables
/// (256-byte inodes, a quarter spare) and of the directory blocks.
const BYTES_PER_INODE: u64 = 1024;

/// A directory to build trees in, torn down (unmounted, image removed) when dropped.
pub struct Scratch {
    dir: PathBuf,
    /// What is under `dir`, for the report: `ext4 (sparse 128 GiB image in /dev/shm, ...)`.
    pub description: String,
    mounted: bool,
    image: Option<PathBuf>,
    remove_dir: bool,
    /// For a slow bed: the FUSE mount on `dir`, and the tmpfs under it.
    slow: Option<(super::slow_fs::SlowMount, Box<Scratch>)>,
}

impl Scratch {
    /// The default: a RAM-backed ext4 as root, a tmpfs directory otherwise.
    pub fn ram_backed(inodes: u64, image_bytes: u64) -> io::Result<Scratch> {
        if rustix::process::geteuid().is_root() {
            Scratch::create(FsKind::Ext4, inodes, image_bytes)
        } else {
            let dir = fresh_dir(Path::new("/dev/shm"))?;
            Ok(Scratch {
                dir,
                description: "tmpfs (/dev/shm; not root, so no loop-mounted ext4)".into(),
                mounted: false,
                image: None,
                remove_dir: true,
                slow: None,
            })
        }
    }

    /// A directory inside an existing filesystem; the trees are removed afterwards, the
    /// directory itself is kept.
    pub fn existing(dir: &Path) -> io::Result<Scratch> {
        let meta = std::fs::metadata(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        if !meta.is_dir() {
            return Err(io::Error::other(format!(
                "{}: not a directory (--scratch needs a directory on the filesystem under test)",
                dir.display()
            )));
        }
        let work = fresh_dir(dir)?;
        Ok(Scratch {
            description: format!("{} ({})", fs_type(dir), dir.display()),
            dir: work,
            mounted: false,
            image: None,
            remove_dir: true,
            slow: None,
        })
    }

    /// A fresh filesystem of `kind` for `inodes` inodes, mounted on a new directory; an
    /// ext4 or xfs one is a sparse image of `image_bytes` in `/dev/shm`. Needs root.
    pub fn create(kind: FsKind, inodes: u64, image_bytes: u64) -> io::Result<Scratch> {
        if !rustix::process::geteuid().is_root() {
            return Err(io::Error::other(
                "making a filesystem to benchmark on needs root (mount); give --scratch DIR instead",
            ));
        }
        let dir = fresh_dir(&std::env::temp_dir())?;
        let mut s = Scratch {
            dir,
            description: String::new(),
            mounted: false,
            image: None,
            remove_dir: true,
            slow: None,
        };
        match kind {
            FsKind::Tmpfs => {
                run(Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "mode=0755", "volsec-bench"])
                    .arg(&s.dir))?;
                s.description = "tmpfs".into();
            }
            FsKind::Ext4 | FsKind::Xfs => s.make_image(kind, inodes, image_bytes)?,
            FsKind::Slow(latency) => {
                // The FUSE mount is registered for the interrupt clean-up but unmounted by
                // dropping it, not by `umount` (`mounted` stays false).
                let backing = Scratch::create(FsKind::Tmpfs, inodes, image_bytes)?;
                let mount = super::slow_fs::SlowMount::mount(backing.path(), &s.dir, latency)?;
                s.description = format!(
                    "slow:{} (FUSE passthrough of a tmpfs; every request answered {} after it \
                     arrives, requests served concurrently; no entry or attribute caching)",
                    super::slow_fs::latency_name(latency),
                    super::slow_fs::latency_name(latency)
                );
                s.slow = Some((mount, Box::new(backing)));
                register(&s);
                return Ok(s);
            }
        }
        s.mounted = true;
        register(&s);
        Ok(s)
    }

    /// The image is sized like the volumes volsec is for, not like the tree, because mkfs
    /// sizes the journal by the filesystem: 1 GiB from 128 GiB up (the default), 64 MiB at
    /// 2 GiB. A pass must wait for checkpoints once about three quarters of the journal is
    /// in use, and a 200,000-inode pass that writes every inode logs about that much (its
    /// inode-table blocks alone are 50 MiB), so on a 2 GiB image every such pass, of every
    /// tool, waits midway on the loop device. The image is sparse, but the journal comes to
    /// take its whole size in memory as passes write, so `/dev/shm` is checked for room first.
    fn make_image(&mut self, kind: FsKind, inodes: u64, bytes: u64) -> io::Result<()> {
        let image = PathBuf::from(format!(
            "/dev/shm/{}.img",
            self.dir.file_name().unwrap_or_default().to_string_lossy()
        ));
        check_image_size(inodes, bytes)?;
        let tables = inodes * BYTES_PER_INODE;
        self.image = Some(image.clone());
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(bytes))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", image.display())))?;
        let inode_count = (inodes + inodes / 4 + 10_000).to_string();
        let log = match kind {
            FsKind::Ext4 => {
                run(Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-I", "256", "-N", &inode_count])
                    .arg(&image))?;
                ext4_journal_bytes(&image)?
            }
            _ => {
                run(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&image)).map_err(
                    |e| match e.kind() {
                        io::ErrorKind::NotFound => io::Error::other(
                            "mkfs.xfs is not installed: install xfsprogs to benchmark on xfs",
                        ),
                        _ => e,
                    },
                )?;
                xfs_log_bytes(&image)?
            }
        };
        enough_memory(log + tables)?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&self.dir))?;
        let (name, log_name) = match kind {
            FsKind::Ext4 => ("ext4", "journal"),
            _ => ("xfs", "log"),
        };
        self.description = format!(
            "{name} (sparse {} image in /dev/shm, {} MiB {log_name}, loop-mounted, RAM-backed)",
            size_name(bytes),
            log >> 20
        );
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where trees are best generated: the same directory as [`Scratch::path`], but for a
    /// slow bed, whose trees are generated in the backing tmpfs directly (quickly) and
    /// then measured through the slow view of it.
    pub fn build_path(&self) -> &Path {
        match &self.slow {
            Some((_, backing)) => backing.path(),
            None => &self.dir,
        }
    }

    /// A new empty directory for one tree.
    pub fn tree_dir(&self, name: &str) -> io::Result<PathBuf> {
        let p = self.dir.join(name);
        if p.exists() {
            std::fs::remove_dir_all(&p)?;
        }
        std::fs::create_dir(&p)?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some((mount, backing)) = self.slow.take() {
            drop(mount);
            unregister(&self.dir);
            drop(backing);
        }
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
            unregister(&self.dir);
        }
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Filesystems mounted by this process, for [`clean_up_on_interrupt`].
static MOUNTED: std::sync::Mutex<Vec<(PathBuf, Option<PathBuf>)>> =
    std::sync::Mutex::new(Vec::new());

fn register(s: &Scratch) {
    if let Ok(mut m) = MOUNTED.lock() {
        m.push((s.dir.clone(), s.image.clone()));
    }
}

fn unregister(dir: &Path) {
    if let Ok(mut m) = MOUNTED.lock() {
        m.retain(|(d, _)| d != dir);
    }
}

/// On SIGINT or SIGTERM, unmount the filesystems this process made and remove their images
/// (they hold RAM in /dev/shm), then exit with status 130. For the `volsec bench` command;
/// a library caller keeps its own signal handling.
pub fn clean_up_on_interrupt() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        volsec_core::sys::flag_interrupts();
        std::thread::spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if volsec_core::sys::interrupted() {
                let mounted = MOUNTED.lock().map(|m| m.clone()).unwrap_or_default();
                for (dir, image) in mounted {
                    eprintln!("volsec: interrupted; unmounting {}", dir.display());
                    let _ = Command::new("umount").arg("-l").arg(&dir).status();
                    if let Some(image) = image {
                        let _ = std::fs::remove_file(image);
                    }
                    let _ = std::fs::remove_dir(&dir);
                }
                std::process::exit(130);
            }
        });
    });
}

fn fresh_dir(parent: &Path) -> io::Result<PathBuf> {
    for n in 0..1000u32 {
        let p = parent.join(format!("volsec-bench-{}-{n}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", p.display()))),
        }
    }
    Err(io::Error::other(format!(
        "{}: cannot make a scratch directory",
        parent.display()
    )))
}

/// The size of an ext4 image's journal, as `dumpe2fs -h` reports it.
fn ext4_journal_bytes(image: &Path) -> io::Result<u64> {
    let out = output(Command::new("dumpe2fs").arg("-h").arg(image))?;
    journal_size_from(&out).ok_or_else(|| {
        io::Error::other(format!(
            "dumpe2fs -h {}: no journal size in its output",
            image.display()
        ))
    })
}

/// "Total journal size: 1024M" (or "Journal size:" from older e2fsprogs), in bytes.
fn journal_size_from(dumpe2fs: &str) -> Option<u64> {
    dumpe2fs
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().ends_with("ournal size"))
        .and_then(|(_, v)| parse_size(v.trim()))
}

/// The size of an xfs image's log, from its superblock.
fn xfs_log_bytes(image: &Path) -> io::Result<u64> {
    let out = output(
        Command::new("xfs_db")
            .args([
                "-f",
                "-r",
                "-c",
                "sb 0",
                "-c",
                "p logblocks",
                "-c",
                "p blocksize",
            ])
            .arg(image),
    )?;
    xfs_log_from(&out).ok_or_else(|| {
        io::Error::other(format!(
            "xfs_db {}: no log size in its output",
            image.display()
        ))
    })
}

/// "logblocks = 16384" and "blocksize = 4096", in bytes.
fn xfs_log_from(xfs_db: &str) -> Option<u64> {
    let field = |name: &str| {
        xfs_db
            .lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
    };
    field("logblocks")?.checked_mul(field("blocksize")?)
}

/// `1024M`, `64M`, `4096k` as dumpe2fs prints them.
fn parse_size(s: &str) -> Option<u64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let scale: u64 = match unit {
        "k" | "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(scale)
}

/// An image needs room for the tree's inode tables and a journal: refused before anything
/// is made, so that a run with several trees fails before the first, not midway.
pub fn check_image_size(inodes: u64, bytes: u64) -> io::Result<()> {
    let min_mib = (inodes * BYTES_PER_INODE + (1 << 30)).div_ceil(1 << 20);
    if bytes < min_mib << 20 {
        return Err(io::Error::other(format!(
            "--image-size {} is below the {min_mib} MiB minimum for {inodes} inodes (their inode tables plus 1 GiB)",
            size_name(bytes)
        )));
    }
    Ok(())
}

/// `128 GiB`, or `1536 MiB` when not a whole number of GiB.
fn size_name(bytes: u64) -> String {
    if bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// Refuses an image whose journal and tables would not fit in what `/dev/shm` has left: a
/// full `/dev/shm` fails the loop device's writes and aborts the journal mid-pass.
fn enough_memory(needed: u64) -> io::Result<()> {
    let st =
        rustix::fs::statvfs("/dev/shm").map_err(|e| io::Error::other(format!("/dev/shm: {e}")))?;
    let free = st.f_bavail * st.f_frsize;
    if free < needed {
        return Err(io::Error::other(format!(
            "/dev/shm: {} MiB free, and a scratch image would take about {} MiB of it as passes \
             write (its journal and inode tables); free memory, give a smaller --image-size \
             (mkfs then makes a smaller journal), or --scratch DIR",
            free >> 20,
            needed >> 20
        )));
    }
    Ok(())
}

/// Runs `cmd` and returns its standard output.
fn output(cmd: &mut Command) -> io::Result<String> {
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{cmd:?}: cannot run it: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &mut Command) -> io::Result<()> {
    output(cmd).map(drop)
}

/// The filesystem type of `dir`, from `statfs`'s magic number.
pub fn fs_type(dir: &Path) -> &'static str {
    let Ok(st) = rustix::fs::statfs(dir) else {
        return "unknown";
    };
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    match magic {
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x0102_1994 => "tmpfs",
        0x9123_683e => "btrfs",
        0x6969 => "nfs",
        0x794c_7630 => "overlayfs",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_sizes_as_dumpe2fs_prints_them() {
        assert_eq!(parse_size("1024M"), Some(1 << 30));
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("4096k"), Some(4 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("1024"), None);
        assert_eq!(parse_size("M"), None);
        let new = "Journal features:         (none)\nTotal journal size:       1024M\nTotal journal blocks:     262144\n";
        assert_eq!(journal_size_from(new), Some(1 << 30));
        let old = "Journal backup:           inode blocks\nJournal size:             64M\n";
        assert_eq!(journal_size_from(old), Some(64 << 20));
        assert_eq!(journal_size_from("Inode count: 5\n"), None);
    }

    #[test]
    fn xfs_log_size_from_its_superblock_fields() {
        assert_eq!(
            xfs_log_from("logblocks = 16384\nblocksize = 4096\n"),
            Some(64 << 20)
        );
        assert_eq!(xfs_log_from("logblocks = 16384\n"), None);
    }

    #[test]
    fn the_smallest_image_offered_is_accepted() {
        let err = check_image_size(600, 512 << 20).unwrap_err().to_string();
        assert_eq!(
            err,
            "--image-size 512 MiB is below the 1025 MiB minimum for 600 inodes (their inode tables plus 1 GiB)"
        );
        assert!(check_image_size(600, 1025 << 20).is_ok());
        assert!(check_image_size(600, 1024 << 20).is_err());
        assert_eq!(size_name(1536 << 20), "1536 MiB");
        assert_eq!(size_name(128 << 30), "128 GiB");
    }
}
