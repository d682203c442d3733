//! A directory being walked: its descriptor, and what is still outstanding below it.

use crate::sys::Stat;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The descriptor of a directory node: the root's is borrowed from the caller's [`super::Root`].
pub(super) enum NodeFd<'r> {
    Root(BorrowedFd<'r>),
    Owned(OwnedFd),
}

pub(super) struct DirNode<'r> {
    /// `None` for the root.
    pub parent: Option<Arc<DirNode<'r>>>,
    /// Name in the parent (empty for the root).
    pub name: CString,
    pub fd: NodeFd<'r>,
    pub stat: Stat,
    /// The reading of this directory, batches in flight, and unfinished subdirectories.
    pending: AtomicUsize,
}

impl<'r> DirNode<'r> {
    pub fn root(fd: BorrowedFd<'r>, stat: Stat) -> Arc<DirNode<'r>> {
        Arc::new(DirNode {
            parent: None,
            name: CString::default(),
            fd: NodeFd::Root(fd),
            stat,
            pending: AtomicUsize::new(1),
        })
    }

    pub fn child(parent: Arc<DirNode<'r>>, name: CString, fd: OwnedFd, stat: Stat) -> Arc<Self> {
        Arc::new(DirNode {
            parent: Some(parent),
            name,
            fd: NodeFd::Owned(fd),
            stat,
            pending: AtomicUsize::new(1),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            NodeFd::Root(fd) => *fd,
            NodeFd::Owned(fd) => fd.as_fd(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.parent.is_none()
    }

    /// One more thing outstanding below this directory.
    pub fn hold(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// One thing finished; returns `true` when it was the last, and the directory is done.
    pub fn release(&self) -> bool {
        self.pending.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// The path of `child` in this directory (or of this directory), for messages.
    pub fn path_of(&self, root: &Path, child: Option<&CStr>) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let mut names: Vec<&CStr> = child.into_iter().collect();
        let mut node = Some(self);
        while let Some(n) = node {
            if n.is_root() {
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

impl Drop for DirNode<'_> {
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
