//! One pass per volume at a time, across processes.
//!
//! Two passes over one volume with different fsGroups or labels (two `volsec apply`, or one
//! beside the agent) can interleave so that the root ends up marked for one job over a tree
//! of the other, and OnRootMismatch then skips it for good. So a pass that writes holds an
//! exclusive `flock` for its whole length on a file named by the root's `(dev, ino)` under
//! [`LOCK_DIR`], on the host's `/run`: a directory a container never reaches, owned by root
//! and writable by nobody else, reached without following a symlink. A lock inside the
//! volume would be the container's to take, hold or remove. The kernel drops the lock when
//! the holder's descriptor closes, however it ends (a `SIGKILL` included); lock files are a
//! few bytes each, never removed (removing one races a process about to lock it), and go
//! with `/run` at boot.

use crate::walk::Root;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FlockOperation, Mode, OFlags};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long every pass waits at least before it calls a volume busy. A child that another
/// thread of the same process forks holds a copy of every descriptor, the lock's too, until
/// its exec closes them: a lock held that way for an instant is not another pass.
const GRACE: Duration = Duration::from_millis(200);

/// Where the lock files live.
pub const LOCK_DIR: &str = "/run/volsec/locks";

/// How long a pass waits for another on the same volume, in milliseconds (0: not at all).
static WAIT_MS: AtomicU64 = AtomicU64::new(0);

/// Sets how long every later pass of this process waits for a pass on the same volume to
/// end before it refuses (`volsec apply --wait`). The default is not to wait.
pub fn set_lock_wait(wait: Duration) {
    let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    WAIT_MS.store(ms, Ordering::Relaxed);
}

/// Why a pass did not get its volume. Each message is one sentence.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another pass holds the volume, and this one was not to wait.
    #[error("{}: another volsec pass is running on this volume (it holds {}); give --wait to wait for it", crate::display::path(path), lock.display())]
    Busy {
        /// The volume's root.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Another pass still held the volume when the wait ran out.
    #[error("{}: another volsec pass still held this volume after waiting {waited:?} (it holds {})", crate::display::path(path), lock.display())]
    TimedOut {
        /// The volume's root.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// How long this pass waited.
        waited: Duration,
    },
    /// The lock file or its directory could not be made or opened.
    #[error("{lock}: cannot take the lock that keeps passes on one volume apart: {err}")]
    Io {
        /// The lock file.
        lock: PathBuf,
        /// What the kernel said.
        err: io::Error,
    },
}

/// The lock on one volume, held until dropped.
#[derive(Debug)]
pub struct VolumeLock {
    _file: OwnedFd,
}

/// Takes the lock on `root`'s volume, waiting as long as [`set_lock_wait`] allows.
pub fn lock_volume(root: &Root) -> Result<VolumeLock, LockError> {
    let wait = Duration::from_millis(WAIT_MS.load(Ordering::Relaxed));
    lock_in(Path::new(LOCK_DIR), root, wait)
}

fn lock_in(dir: &Path, root: &Root, wait: Duration) -> Result<VolumeLock, LockError> {
    let stat = root.stat();
    let name = format!(
        "{}:{}-{}",
        rustix::fs::major(stat.dev),
        rustix::fs::minor(stat.dev),
        stat.ino
    );
    let lock = dir.join(&name);
    let io = |err: io::Error| LockError::Io {
        lock: lock.clone(),
        err,
    };
    let file = open_lock_file(dir, &name).map_err(io)?;
    let started = Instant::now();
    loop {
        match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(VolumeLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io(e.into())),
        }
        let waited = started.elapsed();
        if waited >= wait.max(GRACE) {
            let path = root.path().to_path_buf();
            return Err(if wait.is_zero() {
                LockError::Busy { path, lock }
            } else {
                LockError::TimedOut { path, lock, waited }
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Opens (creating it) the lock file `name` in `dir`, creating `dir` and its parent as
/// root-only directories; refuses a symlink anywhere on the way, and a directory another
/// user owns or may write to.
fn open_lock_file(dir: &Path, name: &str) -> io::Result<OwnedFd> {
    if let Some(parent) = dir.parent() {
        make_private_dir(parent)?;
    }
    let dir_fd = make_private_dir(dir)?;
    let file = rustix::fs::openat(
        &dir_fd,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::from_raw_mode(0o600),
    )?;
    if crate::sys::stat_fd(file.as_fd())?.kind != crate::sys::FileKind::File {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

fn make_private_dir(dir: &Path) -> io::Result<OwnedFd> {
    match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = crate::sys::open_root(dir)?;
    let stat = crate::sys::stat_fd(fd.as_fd())?;
    if stat.uid != rustix::process::geteuid().as_raw() || stat.perm & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} is owned by another user or writable by others",
            dir.display()
        )));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_volume_is_refused_then_granted_once_the_first_is_dropped() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let base = tempfile::tempdir().unwrap();
        let locks = base.path().join("volsec/locks");
        let vol = tempfile::tempdir().unwrap();
        let root = Root::open(vol.path()).unwrap();
        let first = lock_in(&locks, &root, Duration::ZERO).unwrap();
        let busy = lock_in(&locks, &root, Duration::ZERO).unwrap_err();
        assert!(matches!(busy, LockError::Busy { .. }), "{busy}");
        let waited = lock_in(&locks, &root, Duration::from_millis(120)).unwrap_err();
        assert!(matches!(waited, LockError::TimedOut { .. }), "{waited}");
        drop(first);
        lock_in(&locks, &root, Duration::ZERO).unwrap();
    }

    #[test]
    fn a_lock_directory_others_may_write_to_is_refused() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let base = tempfile::tempdir().unwrap();
        let locks = base.path().join("locks");
        std::fs::create_dir(&locks).unwrap();
        rustix::fs::chmod(&locks, Mode::from_raw_mode(0o777)).unwrap();
        let vol = tempfile::tempdir().unwrap();
        let root = Root::open(vol.path()).unwrap();
        let err = lock_in(&locks, &root, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("writable by others"), "{err}");
    }
}
