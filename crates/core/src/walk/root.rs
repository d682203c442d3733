//! The root of a volume: opened once, without following a symlink at any component.

use crate::sys::{self, Stat};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::io;
use std::path::{Path, PathBuf};

/// Why a root was refused. Each message is one sentence naming the path and the cause.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The path does not exist (`ENOENT`).
    #[error("{}: no such directory", crate::display::path(.0))]
    Missing(PathBuf),
    /// The path is not a directory.
    #[error("{}: not a directory (a volume root must be a directory)", crate::display::path(.0))]
    NotADirectory(PathBuf),
    /// A component of the path is a symlink (`ELOOP`, or `ENOTDIR` on a final symlink).
    #[error(
        "{}: a symlink is on the path, and volsec never follows one (give the resolved path)",
        crate::display::path(.0)
    )]
    Symlink(PathBuf),
    /// Any other error opening or reading the root.
    #[error("{}: cannot open: {err}", crate::display::path(path))]
    Open {
        /// The root's path.
        path: PathBuf,
        /// What the kernel answered.
        err: io::Error,
    },
}

/// An open volume root.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
    stat: Stat,
    /// Set on a root opened in a mount namespace of the pass's own ([`Root::isolated`]):
    /// the namespace, kept alive, and whether anything was mounted below the root there.
    private: Option<(OwnedFd, bool)>,
}

impl Root {
    /// Opens `path` as a directory, refusing a symlink at any component.
    pub fn open(path: &Path) -> Result<Root, RootError> {
        let fd = sys::open_root(path).map_err(|err| classify(path, err))?;
        let stat = sys::stat_fd(fd.as_fd()).map_err(|err| RootError::Open {
            path: path.to_path_buf(),
            err,
        })?;
        Ok(Root {
            path: path.to_path_buf(),
            fd,
            stat,
            private: None,
        })
    }

    /// The same directory, opened again by its path in a private copy of the mount
    /// namespace ([`sys::in_private_mounts`]), where no mount can appear while a walk runs:
    /// descriptors opened from it stay in the copy, and what its mount table lists below
    /// the root is all there will be. `None` where no namespace can be made, or where the
    /// path there leads to another directory than this one; the walk then writes only
    /// through entries pinned on the root's mount.
    pub fn isolated(&self) -> Option<Root> {
        let opened = sys::in_private_mounts(|| -> io::Result<(OwnedFd, Stat, bool)> {
            let fd = sys::open_root(&self.path)?;
            let stat = sys::stat_fd(fd.as_fd())?;
            let below = sys::path_of(&fd).map_or(true, |dir| sys::thread_mounts_below(&dir));
            Ok((fd, stat, below))
        });
        let ((fd, stat, below), ns) = match opened {
            Ok((Ok(opened), ns)) => (opened, ns),
            Ok((Err(e), _)) | Err(e) => {
                tracing::debug!(error = %e, "no private mount namespace; writes go through pinned entries");
                return None;
            }
        };
        if (stat.dev, stat.ino) != (self.stat.dev, self.stat.ino) {
            tracing::debug!(path = %crate::display::path(&self.path), "the path leads elsewhere in a private mount namespace");
            return None;
        }
        Some(Root {
            path: self.path.clone(),
            fd,
            stat,
            private: Some((ns, below)),
        })
    }

    /// Whether this root was opened in a private mount namespace ([`Root::isolated`]).
    pub fn is_isolated(&self) -> bool {
        self.private.is_some()
    }

    /// The path the root was opened by, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's descriptor: every change below starts from it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the mount table lists anything mounted below the root. Directories are
    /// always `statx`ed, so nested mounts on them are found in any case; a file can be a
    /// mount point too (a bind mount of a single file), and only its `statx` tells. A
    /// visitor that needs no attributes lets the walk skip that `statx` when nothing is
    /// mounted below: unprivileged containers cannot mount on the node, and the volume
    /// is prepared before its pod's containers start.
    pub fn has_mounts_below(&self) -> bool {
        if let Some((_, below)) = self.private {
            return below;
        }
        match sys::path_of(&self.fd) {
            Ok(dir) => sys::mounts_below(&dir),
            Err(_) => true,
        }
    }

    /// The root as it was when opened.
    pub fn stat(&self) -> &Stat {
        &self.stat
    }

    /// Reads the root's attributes again (after the pass changed them).
    pub fn restat(&self) -> io::Result<Stat> {
        sys::stat_fd(self.fd())
    }
}

fn classify(path: &Path, err: io::Error) -> RootError {
    // With O_NOFOLLOW | O_DIRECTORY a symlink as the last component reads as ENOTDIR; look
    // again, without following, only to say which it is.
    let last_is_symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
    let path = path.to_path_buf();
    match err.raw_os_error() {
        Some(libc::ELOOP) => RootError::Symlink(path),
        Some(libc::ENOTDIR) if last_is_symlink => RootError::Symlink(path),
        Some(libc::ENOTDIR) => RootError::NotADirectory(path),
        Some(libc::ENOENT) => RootError::Missing(path),
        _ => RootError::Open { path, err },
    }
}
