//! What each worker thread does with a task: open a directory, read a buffer of it, hand the
//! subdirectories to the queue, and visit the other entries itself.

use super::node::DirNode;
use super::queue::{Queue, Task};
use super::{Entry, EntryPath, Failure, Outcome, Progress, Root, Visitor, WalkOptions};
use crate::sys::{self, DirReader, EntryType, Stat};
use std::ffi::{CStr, CString};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct Walk<'a, 'r> {
    root_path: &'a Path,
    root_mnt: u64,
    cross_mounts: bool,
    visitor: &'a dyn Visitor,
    progress: &'a Progress,
    cancel: &'a AtomicBool,
    queue: Queue<'r>,
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
    let root_node = DirNode::root(root.fd(), *root.stat());
    let walk = Walk {
        root_path: root.path(),
        root_mnt: root.stat().mnt_id,
        cross_mounts: options.cross_mounts,
        visitor,
        progress,
        cancel,
        queue: Queue::new(threads, Task::Read(root_node)),
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
        let mut reader = DirReader::with_capacity(16 * 1024);
        while let Some(task) = self.queue.pop(self.cancel) {
            match task {
                Task::Read(node) => self.read(node, &mut reader),
                Task::Open { parent, name } => match self.open(&parent, name) {
                    Some(node) => self.read(node, &mut reader),
                    None => self.finish(parent),
                },
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Opens a subdirectory from its parent's descriptor, never through a symlink.
    fn open(&self, parent: &Arc<DirNode<'r>>, name: CString) -> Option<Arc<DirNode<'r>>> {
        let opened = sys::open_dir_at(parent.fd(), &name)
            .and_then(|fd| sys::stat_fd(rustix::fd::AsFd::as_fd(&fd)).map(|st| (fd, st)));
        match opened {
            Ok((fd, stat)) => {
                self.progress.visit();
                if !self.on_root_mount(&stat) {
                    self.progress
                        .skip_mount(parent.path_of(self.root_path, Some(&name)));
                    return None;
                }
                Some(DirNode::child(parent.clone(), name, fd, stat))
            }
            // Listed as a directory, but something else is there now (the container swapped
            // it): handle what is there, without opening it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
                self.other(parent, &name, false);
                None
            }
            Err(e) => {
                self.fail(parent, Some(&name), "open", &e);
                None
            }
        }
    }

    /// Reads `node` a buffer at a time. A full buffer means there may be more: the directory
    /// goes back on the queue first, so another worker can read on while this one works.
    fn read(&self, node: Arc<DirNode<'r>>, reader: &mut DirReader) {
        loop {
            match reader.fill(node.fd()) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.fail(&node, None, "getdents", &e);
                    break;
                }
            }
            if reader.was_short() {
                self.batch(&node, reader);
                continue;
            }
            node.hold();
            self.queue.push(Task::Read(node.clone()));
            self.batch(&node, reader);
            return self.finish(node);
        }
        self.finish(node)
    }

    /// Handles one buffer of entries: subdirectories go to the queue first, so idle workers
    /// get them at once; everything else is visited here.
    fn batch(&self, node: &Arc<DirNode<'r>>, reader: &DirReader) {
        let subdirs: Vec<Task<'r>> = reader
            .entries()
            .filter(|e| e.kind == EntryType::Dir)
            .map(|e| {
                node.hold();
                Task::Open {
                    parent: node.clone(),
                    name: e.name.to_owned(),
                }
            })
            .collect();
        self.queue.push_all(subdirs);
        for entry in reader.entries().filter(|e| e.kind != EntryType::Dir) {
            if self.cancelled() {
                return;
            }
            self.other(node, entry.name, true);
        }
    }

    /// Visits an entry that is not (or, for `d_type` unknown, may not be) a directory.
    fn other(&self, node: &Arc<DirNode<'r>>, name: &CStr, may_open: bool) {
        let stat = match sys::stat_at(node.fd(), name) {
            Ok(stat) => stat,
            Err(e) => return self.fail(node, Some(name), "stat", &e),
        };
        if stat.is_dir() {
            if may_open {
                node.hold();
                self.queue.push(Task::Open {
                    parent: node.clone(),
                    name: name.to_owned(),
                });
            } else {
                let err = io::Error::other("changed between directory and non-directory twice");
                self.fail(node, Some(name), "stat", &err);
            }
            return;
        }
        self.progress.visit();
        if !self.on_root_mount(&stat) {
            return self
                .progress
                .skip_mount(node.path_of(self.root_path, Some(name)));
        }
        let path = || node.path_of(self.root_path, Some(name));
        let entry = Entry {
            parent: node.fd(),
            name,
            stat: &stat,
            fd: None,
            path: EntryPath::Lazy(&path),
        };
        self.apply(&entry);
    }

    fn apply(&self, entry: &Entry<'_>) {
        match self.visitor.visit(entry) {
            Ok(visited) => self.progress.record(visited),
            Err(e) => self.progress.fail(Failure::new(entry.path(), e.op, &e.err)),
        }
    }

    /// Marks one thing below `node` finished. The last one to finish a directory visits it
    /// and passes the completion to its parent, up as far as it goes (a loop, not recursion).
    fn finish(&self, node: Arc<DirNode<'r>>) {
        let mut node = node;
        while node.release() {
            let Some(parent) = node.parent.clone() else {
                return; // the root: the caller decides about it.
            };
            if !self.cancelled() {
                self.visit_dir(&parent, &node);
            }
            drop(node);
            node = parent;
        }
    }

    fn visit_dir(&self, parent: &DirNode<'r>, dir: &DirNode<'r>) {
        let path = || parent.path_of(self.root_path, Some(&dir.name));
        let entry = Entry {
            parent: parent.fd(),
            name: &dir.name,
            stat: &dir.stat,
            fd: Some(dir.fd()),
            path: EntryPath::Lazy(&path),
        };
        self.apply(&entry);
    }

    fn on_root_mount(&self, stat: &Stat) -> bool {
        self.cross_mounts || stat.mnt_id == self.root_mnt
    }

    fn fail(&self, node: &DirNode<'r>, name: Option<&CStr>, op: &'static str, err: &io::Error) {
        let path = node.path_of(self.root_path, name);
        self.progress.fail(Failure::new(path, op, err));
    }
}
