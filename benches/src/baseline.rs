//! What volsec is measured against: the passes Kubernetes nodes run today, re-created
//! faithfully, **path-based on purpose**.
//!
//! These functions resolve a full path for every call, follow the walk order of the Go code
//! they stand for, and write every entry whether it needs it or not, exactly as the
//! originals do. That is what makes them fair baselines, and also what makes them unsafe on
//! an untrusted tree: a container that swaps a directory for a symlink mid-walk redirects
//! them. They exist only to be timed on trees the benchmark generated itself; never point
//! them at a real volume (volsec's own passes go through [`volsec_core::walk`]).
//!
//! - [`kubelet_ownership`]: kubelet's `SetVolumeOwnership` (`pkg/volume/volume_linux.go`):
//!   a serial `walkDeep` (unsorted names, post-order, root last) that for **every** entry
//!   does `lstat`, `lchown(path, -1, fsGroup)` and, unless it is a symlink,
//!   `chmod(path, mode | mask)`, with the OnRootMismatch test on the root first.
//! - [`go_selinux_relabel`]: go-selinux's `Chcon(path, label, true)` (`rchcon` over
//!   `pwalkdir`): one walker feeding 2 x CPUs workers that `lsetxattr` each path; when the
//!   root already carries the label it runs in "fast mode", reading each entry with
//!   `lgetxattr` and skipping it when equal.
//! - [`chgrp_recursive`]: `chgrp -R`, run as a command (a lower bound for any chown pass:
//!   `fchownat` on every entry and no stat).
//! - [`rchm_ownership`]: rchm, the rcp project's parallel recursive chmod/chgrp/chown, run
//!   as a command and asked for kubelet's result ([`rchm_args`]): not what a node runs
//!   today, but a fast general-purpose tool doing the same work. Optional: it runs only
//!   when asked for and found on `PATH` ([`find_rchm`]).

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use volsec_core::ownership::{ChangePolicy, Ownership};
use volsec_core::sys::FileKind;

/// What a baseline pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BaselineCount {
    /// Entries visited, the root included.
    pub visited: u64,
    /// Entries written (for kubelet: every entry, since it never skips).
    pub written: u64,
}

/// kubelet's serial ownership pass. Errors abort the pass as kubelet's `walkDeep` does
/// (an `lstat` or readdir failure) or are counted and passed over (chown/chmod failures
/// are only logged by kubelet).
pub fn kubelet_ownership(
    root: &Path,
    ownership: Ownership,
    policy: ChangePolicy,
) -> io::Result<BaselineCount> {
    let meta = std::fs::symlink_metadata(root)?;
    if policy == ChangePolicy::OnRootMismatch {
        let stat = volsec_core::sys::Stat {
            kind: FileKind::Dir,
            perm: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            dev: 0,
            ino: 0,
            mnt_id: 0,
            nlink: meta.nlink() as u32,
        };
        if meta.is_dir() && ownership.root_matches(&stat) {
            return Ok(BaselineCount {
                visited: 1,
                written: 0,
            });
        }
    }
    let mut count = BaselineCount::default();
    walk_deep(root, &meta, &mut |path, meta| {
        change_file_permission(path, meta, ownership, &mut count);
    })?;
    Ok(count)
}

/// `walkDeep`: children first (names unsorted, each `lstat`ed), the directory itself last.
fn walk_deep(
    path: &Path,
    meta: &std::fs::Metadata,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata),
) -> io::Result<()> {
    if meta.is_dir() {
        let names: Vec<OsString> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        for name in names {
            let child = path.join(name);
            let child_meta = std::fs::symlink_metadata(&child)?;
            walk_deep(&child, &child_meta, f)?;
        }
    }
    f(path, meta);
    Ok(())
}

/// kubelet's `changeFilePermission`: lchown always; chmod every non-symlink to the mode read
/// before the chown OR-ed with the mask (which also restores setuid/setgid).
fn change_file_permission(
    path: &Path,
    meta: &std::fs::Metadata,
    ownership: Ownership,
    count: &mut BaselineCount,
) {
    count.visited += 1;
    count.written += 1;
    if std::os::unix::fs::lchown(path, None, Some(ownership.fs_group)).is_err() {
        return;
    }
    if meta.file_type().is_symlink() {
        return;
    }
    let kind = if meta.is_dir() {
        FileKind::Dir
    } else {
        FileKind::File
    };
    let mask = ownership.mask(kind).unwrap_or(0);
    let mode = (meta.mode() & 0o7777) | mask;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// go-selinux's recursive `Chcon`: one walker, `workers` threads (0: 2 x CPUs, go-selinux's
/// default) each `lsetxattr`ing the paths it receives. In fast mode (the root's label is
/// already `label`) each entry is read first and skipped when equal.
pub fn go_selinux_relabel(root: &Path, label: &str, workers: usize) -> io::Result<BaselineCount> {
    let workers = if workers > 0 {
        workers
    } else {
        2 * std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let fast = read_label(root).is_some_and(|l| l == label.as_bytes());
    let (tx, rx) = mpsc::sync_channel::<PathBuf>(workers * 64);
    let rx = Mutex::new(rx);
    let visited = std::sync::atomic::AtomicU64::new(0);
    let written = std::sync::atomic::AtomicU64::new(0);
    let first_error: Mutex<Option<io::Error>> = Mutex::new(None);
    let walked = std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Ok(path) = rx.lock().expect("queue").recv() else {
                    return;
                };
                visited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if fast && read_label(&path).is_some_and(|l| l == label.as_bytes()) {
                    continue;
                }
                match xattr::set(&path, SELINUX_XATTR, label.as_bytes()) {
                    Ok(()) => {
                        written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        first_error.lock().expect("slot").get_or_insert(e);
                    }
                }
            });
        }
        let walked = walk_dir(root, &tx);
        drop(tx);
        walked
    });
    walked?;
    if let Some(e) = first_error.into_inner().expect("slot") {
        return Err(e);
    }
    Ok(BaselineCount {
        visited: visited.into_inner(),
        written: written.into_inner(),
    })
}

const SELINUX_XATTR: &str = "security.selinux";

/// `lgetxattr(path, "security.selinux")`, without a trailing NUL, read as go-selinux's
/// `lgetxattr` does: into a 128-byte buffer first (the kernel allocates and zeroes what it is
/// asked for), and only on `ERANGE` asking for the size and reading again.
fn read_label(path: &Path) -> Option<Vec<u8>> {
    let mut first = [0u8; 128];
    let mut v = match rustix::fs::lgetxattr(path, SELINUX_XATTR, &mut first) {
        Ok(len) => first[..len].to_vec(),
        Err(rustix::io::Errno::RANGE) => {
            let mut whole = vec![0u8; rustix::fs::lgetxattr_query(path, SELINUX_XATTR).ok()?];
            let len = rustix::fs::lgetxattr(path, SELINUX_XATTR, &mut whole).ok()?;
            whole.truncate(len);
            whole
        }
        Err(_) => return None,
    };
    if v.last() == Some(&0) {
        v.pop();
    }
    Some(v)
}

/// `filepath.WalkDir` order: pre-order, names sorted, types from `d_type` (no stat).
fn walk_dir(path: &Path, tx: &mpsc::SyncSender<PathBuf>) -> io::Result<()> {
    tx.send(path.to_path_buf()).map_err(io::Error::other)?;
    let mut entries: Vec<std::fs::DirEntry> =
        std::fs::read_dir(path)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_type()?.is_dir() {
            walk_dir(&e.path(), tx)?;
        } else {
            tx.send(e.path()).map_err(io::Error::other)?;
        }
    }
    Ok(())
}

/// `chgrp -R GID PATH`, as a command.
pub fn chgrp_recursive(root: &Path, gid: u32) -> io::Result<()> {
    let out = std::process::Command::new("chgrp")
        .arg("-R")
        .arg(gid.to_string())
        .arg(root)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("chgrp: cannot run it: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "chgrp -R {gid} {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// rchm's `--mode` program for kubelet's read-write masks: `0660` on files (and other
/// non-directories; symlinks have no mode), `0770` plus setgid on directories, bits only
/// added (kubelet's `mode | mask`).
pub const RCHM_MODE: &str = "f:ug+rw d:ug+rwx,g+s";

/// The arguments rchm is run with to give the tree at `root` kubelet's fsGroup result with
/// group `group` (a gid): `--group GID` on every entry (symlinks by `lchown`), kubelet's masks as
/// [`RCHM_MODE`], `--summary` for its counts; `adaptive` adds its adaptive metadata
/// throttle with no cap on the files in flight (`--auto-meta-throttle --max-files-in-flight
/// unlimited`). Everything else is rchm's default.
pub fn rchm_args(root: &Path, group: &str, adaptive: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--group".into(),
        group.into(),
        "--mode".into(),
        RCHM_MODE.into(),
        "--summary".into(),
    ];
    if adaptive {
        args.extend(
            ["--auto-meta-throttle", "--max-files-in-flight", "unlimited"]
                .iter()
                .map(OsString::from),
        );
    }
    args.push(root.into());
    args
}

/// rchm's command line as [`rchm_args`] makes it, for the record: `rchm --group GID --mode
/// 'f:ug+rw d:ug+rwx,g+s' --summary [...] TREE`.
pub fn rchm_command_line(adaptive: bool) -> String {
    let mut words = vec!["rchm".to_string()];
    for arg in rchm_args(Path::new("TREE"), "GID", adaptive) {
        let arg = arg.to_string_lossy().into_owned();
        words.push(if arg.contains(' ') {
            format!("'{arg}'")
        } else {
            arg
        });
    }
    words.join(" ")
}

/// The `rchm` executable on `PATH`, if there is one.
pub fn find_rchm() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("rchm"))
        .find(|exe| {
            std::fs::metadata(exe).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The first line of `rchm --version`, e.g. `rchm 0.41.0`.
pub fn rchm_version(exe: &Path) -> io::Result<String> {
    let out = std::process::Command::new(exe)
        .arg("--version")
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: cannot run it: {e}", exe.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().next().map(str::trim) {
        Some(line) if out.status.success() && !line.is_empty() => Ok(line.to_string()),
        _ => Err(io::Error::other(format!(
            "{} --version failed ({}): {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// rchm run by `exe` on the tree at `root` with [`rchm_args`]. Returns the entries it
/// changed, as its summary counts them (files, symlinks and directories changed), when it
/// printed one; a failure, or any error it reports, is an error.
pub fn rchm_ownership(
    exe: &Path,
    root: &Path,
    gid: u32,
    adaptive: bool,
) -> io::Result<Option<u64>> {
    let args = rchm_args(root, &gid.to_string(), adaptive);
    let out = std::process::Command::new(exe)
        .args(&args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: cannot run it: {e}", exe.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let said = [stderr.trim(), stdout.trim()].join(" ");
        return Err(io::Error::other(format!(
            "{} {} failed ({}): {}",
            exe.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            said.trim()
        )));
    }
    Ok(rchm_changed(&stdout).or_else(|| rchm_changed(&stderr)))
}

/// The sum of the `files changed: N`, `symlinks changed: N` and `directories changed: N`
/// lines of rchm's summary; `None` when the text has none of them.
pub fn rchm_changed(summary: &str) -> Option<u64> {
    let mut total = None;
    for line in summary.lines() {
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        if !matches!(
            name.trim(),
            "files changed" | "symlinks changed" | "directories changed"
        ) {
            continue;
        }
        if let Ok(n) = value.trim().parse::<u64>() {
            total = Some(total.unwrap_or(0) + n);
        }
    }
    total
}
