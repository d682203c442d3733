//! A parallel, descriptor-relative walk of one volume, root last.
//!
//! # Why not an existing walker
//! `walkdir`, `ignore` and `jwalk` hand out paths. A path is resolved again by every system
//! call that takes it, so a container that swaps a directory for a symlink between two calls
//! redirects the second one anywhere on the host. This walker never resolves a path: each
//! directory is opened from its parent's descriptor with `O_NOFOLLOW | O_DIRECTORY`, and each
//! entry is changed by name inside that descriptor with `AT_SYMLINK_NOFOLLOW` semantics, or,
//! for a directory, through the descriptor volsec opened itself.
//!
//! # How the work is shared
//! The unit of work is one `getdents64` buffer of one directory (up to 1 MiB, about 30,000
//! entries), whose files are changed in inode order.
//! Directories waiting to be read sit on one shared LIFO stack; a worker takes the top
//! directory, reads a buffer, pushes the subdirectories it found, and handles the files
//! itself. LIFO keeps the walk close to depth-first, so what is held at any time is bounded
//! by threads x (one buffer + depth), not by the size of the tree; no thread recurses, so
//! depth cannot overflow a stack. A directory bigger than one buffer, whose first entries
//! mostly need a change, is read in passes over ranges of inode numbers, each pass's slice
//! shared out in pieces (`inode_order.rs`), one such directory at a time (at most two
//! 16 MiB slices). Any other goes back on the stack after each buffer, so another worker
//! can read the next buffer of it at the same time.
//!
//! # Order, and why the root is last
//! kubelet changes each directory after its children (post-order). Only the root's place in
//! that order matters: it is the OnRootMismatch marker, so it must change last and only
//! when everything below succeeded. Every other entry's final state depends only on its own
//! attributes, so the walker changes a directory as soon as it has opened it, through that
//! descriptor; the final state is the same, and a directory's descriptor can then be closed
//! as soon as it is read, which keeps a 10,000-level chain to a handful of descriptors. The
//! root is never visited here: the caller decides whether to change it from the
//! [`Outcome`], once the whole tree below has been seen.
//!
//! # Mounts
//! By default the walk stays on the root's mount: an entry whose mount id differs is a nested
//! mount point, reported and skipped with everything under it.

pub mod concurrency;
mod inode_order;
mod node;
mod progress;
mod queue;
mod root;
mod worker;

pub use progress::{
    is_filesystem_wide, lossy, stop_sentence, Errno, Failure, Progress, Tally, UnknownErrno,
};
pub use root::{Root, RootError};

use crate::sys::Stat;
use rustix::fd::BorrowedFd;
use std::ffi::{CStr, CString};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// One entry below the root, handed to a [`Visitor`].
pub struct Entry<'a> {
    /// The directory the entry is in.
    pub parent: BorrowedFd<'a>,
    /// Its name in `parent`.
    pub name: &'a CStr,
    /// What `statx` said of it, without following it. `None` only for a non-directory
    /// whose `d_type` was known, when the visitor said it needs no attributes
    /// ([`Visitor::needs_stat`]).
    pub stat: Option<&'a Stat>,
    /// For a directory, the descriptor the walker opened it with; changes go through it.
    pub fd: Option<BorrowedFd<'a>>,
    /// For a non-directory the walker pinned (`O_PATH`) on the root's mount, the pin:
    /// `stat` was read through it, and changes go through it.
    pub pin: Option<BorrowedFd<'a>>,
    /// Where the walk cannot keep mounts from appearing (no private mount namespace), the
    /// root's mount id: a change to an entry without `fd` or `pin` must then be made through
    /// a pin taken on that mount ([`Entry::pin_now`]), never by name.
    beneath: Option<u64>,
    path: EntryPath<'a>,
}

enum EntryPath<'a> {
    Known(&'a std::path::Path),
    Lazy(&'a dyn Fn() -> PathBuf),
}

impl<'a> Entry<'a> {
    /// The root itself, changed through its own descriptor.
    pub fn root(root: &'a Root) -> Entry<'a> {
        Entry {
            parent: root.fd(),
            name: c".",
            stat: Some(root.stat()),
            fd: Some(root.fd()),
            pin: None,
            beneath: None,
            path: EntryPath::Known(root.path()),
        }
    }

    /// The entry's path, for messages. Built on demand; never used to reach the entry.
    pub fn path(&self) -> PathBuf {
        match self.path {
            EntryPath::Known(p) => p.to_path_buf(),
            EntryPath::Lazy(f) => f(),
        }
    }

    /// Where a change to this entry must be made: its own descriptor or its pin if the
    /// walker holds one, otherwise its name inside the parent, not followed (but see
    /// [`Entry::must_pin`]).
    pub fn target(&self) -> crate::sys::Target<'_> {
        match (self.fd, self.pin) {
            (Some(fd), _) => crate::sys::Target::Fd(fd),
            (None, Some(pin)) => crate::sys::Target::Pinned(pin),
            (None, None) => crate::sys::Target::At(self.parent, self.name),
        }
    }

    /// Whether a change must not be made by name: the walker holds no descriptor of the
    /// entry, and a mount may appear over its name at any time.
    pub fn must_pin(&self) -> bool {
        self.fd.is_none() && self.pin.is_none() && self.beneath.is_some()
    }

    /// Pins the entry (`O_PATH | O_NOFOLLOW`) to change it through the pin. Where mounts may
    /// appear ([`Entry::must_pin`]), only on the root's mount: a name with something mounted
    /// over it fails with `EXDEV`, which the walk reports as a nested mount skipped.
    pub fn pin_now(&self) -> io::Result<rustix::fd::OwnedFd> {
        match self.beneath {
            Some(mount) => crate::sys::pin_beneath(self.parent, self.name, mount),
            None => crate::sys::pin(self.parent, self.name),
        }
    }
}

/// What a visitor did to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visited {
    /// Something was written (or, in a dry run, would have been).
    Changed,
    /// The entry was already right; nothing was written.
    Unchanged,
}

/// A failed operation on an entry: which call, and what the kernel said.
#[derive(Debug)]
pub struct OpError {
    /// The system call that failed, e.g. `chown`, `lsetxattr`, `open`.
    pub op: &'static str,
    /// What the kernel answered.
    pub err: io::Error,
}

impl OpError {
    /// An error of `op`.
    pub fn new(op: &'static str, err: io::Error) -> OpError {
        OpError { op, err }
    }
}

/// The work done on each entry. Called from several threads at once.
pub trait Visitor: Sync {
    /// Does the work on one entry: reads what it needs, writes only what differs. An error
    /// is recorded as a [`Failure`] of that entry and the walk goes on.
    fn visit(&self, entry: &Entry<'_>) -> Result<Visited, OpError>;

    /// Whether every entry must be `statx`ed. A visitor that only reads and writes by name
    /// (a relabel) says `false`, and non-directories whose `d_type` is known are then
    /// visited without a `statx`: a third fewer system calls. Directories are always
    /// opened and `statx`ed, so nested mount points are still found; a single file
    /// bind-mounted over a name inside the volume is found because the walk `statx`es
    /// every entry anyway when the mount table lists a mount below the root
    /// ([`Root::has_mounts_below`]).
    fn needs_stat(&self) -> bool {
        true
    }

    /// Whether the visitor has met a failure that ends the walk (say, a filesystem that
    /// cannot hold what it writes). The walk then stops as if cancelled, and reports
    /// [`Outcome::Failed`]: the visitor has recorded why.
    fn halted(&self) -> bool {
        false
    }
}

/// How to walk.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Worker threads; 0 means one per online CPU.
    pub threads: usize,
    /// Descend into nested mounts instead of skipping them.
    pub cross_mounts: bool,
    /// How many failures to keep with their paths (all are counted).
    pub max_errors: usize,
    /// Names of entries directly below the root to leave alone: neither changed nor
    /// descended, counted as excluded (`lost+found`, which charts' init containers skip).
    pub exclude: Vec<CString>,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            threads: 0,
            cross_mounts: false,
            max_errors: 100,
            exclude: Vec::new(),
        }
    }
}

impl WalkOptions {
    /// The number of workers to start: `threads` (at most [`concurrency::MAX_WORKERS`]), or
    /// the online CPUs when it is 0.
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads.min(concurrency::MAX_WORKERS)
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// How the walk below the root ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything below the root was visited without a failure.
    Complete,
    /// Some entries failed; see [`Progress`].
    Failed,
    /// The walk was cancelled before it finished.
    Cancelled,
}

/// The walk could not start its workers; nothing was visited.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot start {threads} walker threads (started {started}): {err}; give fewer with --threads"
)]
pub struct SpawnError {
    /// The workers asked for.
    pub threads: usize,
    /// How many had started when one could not.
    pub started: usize,
    /// What the kernel said.
    #[source]
    pub err: io::Error,
}

/// Walks everything below `root`, calling `visitor` once on each entry (directories as
/// soon as they are opened). Counts and
/// failures go to `progress`, which others may read while the walk runs. Setting `cancel`
/// stops the walk at the next batch.
///
/// Every worker is started before any touches the volume, so a thread that cannot be
/// started (`EAGAIN`: the process or the node out of threads) is a [`SpawnError`] with
/// nothing visited, never a walk abandoned halfway.
pub fn walk(
    root: &Root,
    options: &WalkOptions,
    visitor: &dyn Visitor,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<Outcome, SpawnError> {
    worker::run(root, options, visitor, progress, cancel)
}
