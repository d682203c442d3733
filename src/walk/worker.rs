//! What each worker thread does with a task: open a directory and change it, read a buffer
//! of it, hand the subdirectories to the queue, and visit the other entries itself.

use super::inode_order::{Allowance, Gather, HugeDir, Slice};
use super::node::{Dir, PathNode};
use super::queue::{Queue, Task};
use super::{Entry, EntryPath, Failure, Outcome, Progress, Root, Visitor, WalkOptions};
use crate::sys::{self, DirReader, EntryType, Stat};
use rustix::fd::AsFd;
use std::ffi::{CStr, CString};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How much of a directory one worker reads (`getdents64`) before it works on the entries:
/// about 30,000 entries with short names. The entries of a buffer are changed in inode
/// order (see [`inode_order`](super::inode_order) for why, and for directories that do not
/// fit in one buffer). Each thread holds one buffer, so memory stays threads x 1 MiB
/// whatever the tree.
const BATCH_BYTES: usize = 1 << 20;

struct Walk<'a, 'r> {
    root_path: &'a Path,
    root_mnt: u64,
    cross_mounts: bool,
    visitor: &'a dyn Visitor,
    progress: &'a Progress,
    cancel: &'a AtomicBool,
    queue: Queue<'r>,
    huge: Allowance,
}

pub(super) fn run(
    root: &Root,
    options: &WalkOptions,
    visitor: &dyn Visitor,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Outcome {
    let threads = options.effective_threads();
    let failed_before = progress.tally().failed;
    let walk = Walk {
        root_path: root.path(),
        root_mnt: root.stat().mnt_id,
        cross_mounts: options.cross_mounts,
        visitor,
        progress,
        cancel,
        queue: Queue::new(threads, Task::List(Dir::root(root.fd()))),
        huge: Allowance::default(),
    };
    std::thread::scope(|s| {
        for i in 0..threads {
            let walk = &walk;
            std::thread::Builder::new()
                .name(format!("volsec-walk-{i}"))
                .spawn_scoped(s, move || walk.work())
                .expect("spawn a walker thread");
        }
    });
    if cancel.load(Ordering::Relaxed) {
        Outcome::Cancelled
    } else if progress.tally().failed > failed_before {
        Outcome::Failed
    } else {
        Outcome::Complete
    }
}

impl<'r> Walk<'_, 'r> {
    fn work(&self) {
        let mut reader = DirReader::with_capacity(BATCH_BYTES);
        while let Some(task) = self.queue.pop(self.cancel) {
            match task {
                Task::List(dir) => self.read(dir, &mut reader, true),
                Task::ReadOn(dir) => self.read(dir, &mut reader, false),
                Task::Open { parent, name } => {
                    if let Some(dir) = self.open(&parent, name) {
                        drop(parent); // its descriptor may close now
                        self.read(dir, &mut reader, true);
                    }
                }
                Task::Pass {
                    huge,
                    from,
                    previous,
                } => self.pass(huge, Gather::new(from), &mut reader, Some(previous)),
                Task::Visit(slice) => self.visit(&slice, &mut reader),
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Opens a subdirectory from its parent's descriptor, never through a symlink, and
    /// visits it through the descriptor it was opened with.
    fn open(&self, parent: &Arc<Dir<'r>>, name: CString) -> Option<Arc<Dir<'r>>> {
        let opened = sys::open_dir_at(parent.fd(), &name)
            .and_then(|fd| sys::stat_fd(fd.as_fd()).map(|stat| (fd, stat)));
        let (fd, stat) = match opened {
            Ok(opened) => opened,
            // Listed as a directory, but something else is there now (the container swapped
            // it): handle what is there, without opening it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
                self.other(parent, &name, EntryType::Unknown, false);
                return None;
            }
            Err(e) => {
                self.fail(parent, Some(&name), "open", &e);
                return None;
            }
        };
        self.progress.visit();
        let path = PathNode::child(&parent.path, name);
        if !self.on_root_mount(&stat) {
            self.progress.skip_mount(path.path_of(self.root_path, None));
            return None;
        }
        let message_path = || path.path_of(self.root_path, None);
        self.apply(&Entry {
            parent: parent.fd(),
            name: &path.name,
            stat: Some(&stat),
            fd: Some(fd.as_fd()),
            path: EntryPath::Lazy(&message_path),
        });
        Some(Dir::opened(path, fd))
    }

    /// Reads `dir` a buffer at a time. A full first buffer means a huge directory: it is
    /// read in inode order if no other huge directory is ([`super::inode_order`]).
    /// Otherwise a full buffer goes back on the queue first, so another worker can read on
    /// while this one works.
    fn read(&self, dir: Arc<Dir<'r>>, reader: &mut DirReader, mut first: bool) {
        loop {
            match reader.fill(dir.fd()) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return self.fail(&dir, None, "getdents", &e),
            }
            if reader.was_short() {
                self.batch(&dir, reader);
                first = false;
                continue;
            }
            if first {
                if let Some(huge) = self.huge.take(&dir) {
                    return self.pass(huge, Gather::new(0), reader, None);
                }
            }
            self.queue.push(Task::ReadOn(dir.clone()));
            return self.batch(&dir, reader);
        }
    }

    /// One read of a huge directory, keeping the entries of the next range of inode
    /// numbers. The first pass starts with the buffer already read; the others read from
    /// the start again, while other workers visit the previous slice, and help finish it
    /// before handing out their own.
    fn pass(
        &self,
        huge: Arc<HugeDir<'r>>,
        mut gather: Gather,
        reader: &mut DirReader,
        previous: Option<Arc<Slice<'r>>>,
    ) {
        if !self.gather(&huge.dir, &mut gather, reader) {
            return;
        }
        if let Some(previous) = previous {
            self.visit(&previous, reader);
        }
        let (slice, next) = gather.finish(huge.clone());
        let slice = Arc::new(slice);
        let holders = (0..self.queue.workers()).map(|_| Task::Visit(slice.clone()));
        self.queue.push_all(holders);
        if let Some(from) = next {
            self.queue.push(Task::Pass {
                huge,
                from,
                previous: slice,
            });
        }
    }

    /// Reads the whole directory into `gather`. `false` if the read failed (reported) or
    /// the walk was cancelled.
    fn gather(&self, dir: &Arc<Dir<'r>>, gather: &mut Gather, reader: &mut DirReader) -> bool {
        let mut filled = gather.is_first();
        if !filled {
            if let Err(e) = reader.rewind(dir.fd()) {
                self.fail(dir, None, "lseek", &e);
                return false;
            }
        }
        loop {
            if filled {
                for e in reader.entries() {
                    gather.offer(e.ino, e.name, e.kind);
                }
            }
            if self.cancelled() {
                return false;
            }
            filled = match reader.fill(dir.fd()) {
                Ok(filled) => filled,
                Err(e) => {
                    self.fail(dir, None, "getdents", &e);
                    return false;
                }
            };
            if !filled {
                return true;
            }
        }
    }

    /// Visits pieces of a huge directory's slice until none is left. A subdirectory is
    /// opened and read there and then (its own subdirectories go to the queue): queued, the
    /// subdirectories of a directory of millions would each hold a task at once.
    fn visit(&self, slice: &Slice<'r>, reader: &mut DirReader) {
        let dir = &slice.huge.dir;
        slice.visit_pieces(|name, kind| {
            if kind != EntryType::Dir {
                self.other(dir, name, kind, true);
            } else if let Some(subdir) = self.open(dir, name.to_owned()) {
                self.read(subdir, reader, true);
            }
            !self.cancelled()
        });
    }

    /// Handles one buffer of entries: subdirectories go to the queue first, so idle workers
    /// get them at once; everything else is visited here, in inode order (see
    /// [`BATCH_BYTES`]).
    fn batch(&self, dir: &Arc<Dir<'r>>, reader: &DirReader) {
        self.queue.push_all(subdirs(dir, reader));
        let mut others: Vec<_> = reader
            .entries()
            .filter(|e| e.kind != EntryType::Dir)
            .collect();
        others.sort_unstable_by_key(|e| e.ino);
        for entry in others {
            if self.cancelled() {
                return;
            }
            self.other(dir, entry.name, entry.kind, true);
        }
    }

    /// Visits an entry that is not (or, for `d_type` unknown, may not be) a directory.
    fn other(&self, dir: &Arc<Dir<'r>>, name: &CStr, kind: EntryType, may_open: bool) {
        let stat = if kind == EntryType::Unknown || self.visitor.needs_stat() {
            match sys::stat_at(dir.fd(), name) {
                Ok(stat) => Some(stat),
                Err(e) => return self.fail(dir, Some(name), "stat", &e),
            }
        } else {
            None
        };
        if stat.is_some_and(|s| s.is_dir()) {
            return self.reopen(dir, name, may_open);
        }
        self.progress.visit();
        if stat.is_some_and(|s| !self.on_root_mount(&s)) {
            let path = dir.path.path_of(self.root_path, Some(name));
            return self.progress.skip_mount(path);
        }
        let message_path = || dir.path.path_of(self.root_path, Some(name));
        self.apply(&Entry {
            parent: dir.fd(),
            name,
            stat: stat.as_ref(),
            fd: None,
            path: EntryPath::Lazy(&message_path),
        });
    }

    /// A directory where `d_type` did not say so (unknown, or swapped in since the listing)
    /// is queued to be opened once; a second change of type is reported, not chased.
    fn reopen(&self, dir: &Arc<Dir<'r>>, name: &CStr, may_open: bool) {
        if !may_open {
            // EAGAIN: the container keeps changing it; the next pass will try again.
            let err = io::Error::from_raw_os_error(libc::EAGAIN);
            return self.fail(dir, Some(name), "stat", &err);
        }
        self.queue.push(Task::Open {
            parent: dir.clone(),
            name: name.to_owned(),
        });
    }

    fn apply(&self, entry: &Entry<'_>) {
        match self.visitor.visit(entry) {
            Ok(visited) => self.progress.record(visited),
            Err(e) => self.progress.fail(Failure::new(entry.path(), e.op, &e.err)),
        }
    }

    fn on_root_mount(&self, stat: &Stat) -> bool {
        self.cross_mounts || stat.mnt_id == self.root_mnt
    }

    fn fail(&self, dir: &Dir<'r>, name: Option<&CStr>, op: &'static str, err: &io::Error) {
        let path = dir.path.path_of(self.root_path, name);
        self.progress.fail(Failure::new(path, op, err));
    }
}

/// The subdirectories in the reader's buffer, as tasks to open them.
fn subdirs<'b, 'r>(
    dir: &'b Arc<Dir<'r>>,
    reader: &'b DirReader,
) -> impl Iterator<Item = Task<'r>> + 'b {
    reader
        .entries()
        .filter(|e| e.kind == EntryType::Dir)
        .map(|e| Task::Open {
            parent: dir.clone(),
            name: e.name.to_owned(),
        })
}
