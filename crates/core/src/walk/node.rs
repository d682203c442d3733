//! The two things the walker keeps per directory: its open descriptor, held only while the
//! directory is being read or its subdirectories are waiting to be opened from it, and its
//! name in a chain of parents, kept only to build paths for messages.
//!
//! Keeping them apart is what bounds descriptors: a directory's descriptor is closed as soon
//! as it is read and its subdirectories are open, however deep the walk goes below it, so a
//! chain 10,000 levels deep holds a handful of descriptors, not 10,000. The walker counts
//! the descriptors open ([`open_dirs`]) so that, near the limit, it opens first the waiting
//! subdirectories that let a parent close (see `queue::freeing`).

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A directory's name and its parent's, for messages; never used to reach anything.
pub(super) struct PathNode {
    parent: Option<Arc<PathNode>>,
    pub name: CString,
}

impl PathNode {
    pub fn root() -> Arc<PathNode> {
        Arc::new(PathNode {
            parent: None,
            name: CString::default(),
        })
    }

    pub fn child(parent: &Arc<PathNode>, name: CString) -> Arc<PathNode> {
        Arc::new(PathNode {
            parent: Some(parent.clone()),
            name,
        })
    }

    /// Whether this is the walk's root.
    pub fn is_root(&self) -> bool {
        self.parent.is_none()
    }

    /// The path of `child` in this directory (or of this directory), below `root`.
    pub fn path_of(&self, root: &Path, child: Option<&CStr>) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let mut names: Vec<&CStr> = child.into_iter().collect();
        let mut node = Some(self);
        while let Some(n) = node {
            if n.parent.is_none() {
                break;
            }
            names.push(&n.name);
            node = n.parent.as_deref();
        }
        let mut path = root.to_path_buf();
        for name in names.iter().rev() {
            path.push(std::ffi::OsStr::from_bytes(name.to_bytes()));
        }
        path
    }
}

impl Drop for PathNode {
    /// Unlinks the chain of parents iteratively: dropping the last reference to a node
    /// 10,000 levels deep must not recurse 10,000 times.
    fn drop(&mut self) {
        let mut parent = self.parent.take();
        while let Some(node) = parent {
            match Arc::try_unwrap(node) {
                Ok(mut node) => parent = node.parent.take(),
                Err(_) => break,
            }
        }
    }
}

/// Directory descriptors the walker holds open, in every walk of this process (the limit,
/// `RLIMIT_NOFILE`, is the process's).
static OPEN_DIRS: AtomicUsize = AtomicUsize::new(0);

/// How many directory descriptors are open now (see [`OPEN_DIRS`]).
pub(super) fn open_dirs() -> usize {
    OPEN_DIRS.load(Ordering::Relaxed)
}

/// An open directory. Shared by the task reading it and the tasks opening its
/// subdirectories; the descriptor closes when the last of them is done.
pub(super) struct Dir<'r> {
    pub path: Arc<PathNode>,
    fd: DirFd<'r>,
}

/// The root's descriptor is borrowed from the caller's [`super::Root`].
enum DirFd<'r> {
    Root(BorrowedFd<'r>),
    Owned(OwnedFd),
}

impl<'r> Dir<'r> {
    pub fn root(fd: BorrowedFd<'r>) -> Arc<Dir<'r>> {
        Arc::new(Dir {
            path: PathNode::root(),
            fd: DirFd::Root(fd),
        })
    }

    pub fn opened(path: Arc<PathNode>, fd: OwnedFd) -> Arc<Dir<'r>> {
        OPEN_DIRS.fetch_add(1, Ordering::Relaxed);
        Arc::new(Dir {
            path,
            fd: DirFd::Owned(fd),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            DirFd::Root(fd) => *fd,
            DirFd::Owned(fd) => fd.as_fd(),
        }
    }
}

impl Drop for Dir<'_> {
    fn drop(&mut self) {
        if let DirFd::Owned(_) = self.fd {
            OPEN_DIRS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
