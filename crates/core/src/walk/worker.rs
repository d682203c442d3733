//! What each worker thread does with a task: open a directory and change it, read a buffer
//! of it, hand the subdirectories to the queue, and visit the other entries itself.

use super::inode_order::{Allowance, Delivery, Gather, HugeDir, Key, Probed, Rest, Slice, PROBE};
use super::node::{Dir, PathNode};
use super::queue::{Queue, Task};
use super::{
    Entry, EntryPath, Failure, Outcome, Progress, Root, SpawnError, Visited, Visitor, WalkOptions,
};
use crate::sys::{self, DirEntry, DirReader, EntryType, Stat};
use rustix::fd::AsFd;
use std::ffi::{CStr, CString};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

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
    /// The root's mount id when the walk runs where mounts may appear under it (no private
    /// mount namespace): every entry is then pinned on that mount before it is written.
    beneath: Option<u64>,
    /// Whether every non-directory is `statx`ed: the visitor needs its attributes, or a
    /// file below the root may be a mount point that must be skipped.
    stat_all: bool,
    visitor: &'a dyn Visitor,
    progress: &'a Progress,
    cancel: &'a AtomicBool,
    queue: Queue<'r>,
    allowance: Allowance,
    /// Directory descriptors the walk may hold before it frees some first.
    descriptor_budget: usize,
    /// Names directly below the root left alone ([`WalkOptions::exclude`]).
    exclude: &'a [CString],
}

pub(super) fn run(
    root: &Root,
    options: &WalkOptions,
    visitor: &dyn Visitor,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<Outcome, SpawnError> {
    let plan = super::concurrency::plan_for(options, root);
    let threads = plan.threads();
    let failed_before = progress.tally().failed;
    // In a mount namespace of its own the walk sees no mount appear; elsewhere it pins.
    let isolated = (!options.cross_mounts && !root.is_isolated())
        .then(|| root.isolated())
        .flatten();
    let root = isolated.as_ref().unwrap_or(root);
    let walk = Walk {
        root_path: root.path(),
        root_mnt: root.stat().mnt_id,
        cross_mounts: options.cross_mounts,
        beneath: (!options.cross_mounts && !root.is_isolated()).then_some(root.stat().mnt_id),
        stat_all: visitor.needs_stat() || (!options.cross_mounts && root.has_mounts_below()),
        visitor,
        progress,
        cancel,
        queue: Queue::new(threads, Task::List(Dir::root(root.fd()))),
        allowance: Allowance::default(),
        descriptor_budget: descriptor_budget(threads),
        exclude: &options.exclude,
    };
    walk.queue.set_limit(plan.start());
    progress.set_concurrency(plan.start());
    let gate = Gate::default();
    let spawned = std::thread::scope(|s| {
        for i in 0..threads {
            let (walk, gate) = (&walk, &gate);
            let started = std::thread::Builder::new()
                .name(format!("volsec-walk-{i}"))
                .spawn_scoped(s, move || {
                    if gate.wait() {
                        walk.work(i);
                    }
                });
            if let Err(err) = started {
                // The workers already started return without touching the volume.
                gate.open(false);
                return Err(SpawnError {
                    threads,
                    started: i,
                    err,
                });
            }
        }
        gate.open(true);
        s.spawn(|| super::concurrency::adapt(plan, &walk.queue, progress));
        Ok(())
    });
    spawned?;
    Ok(if cancel.load(Ordering::Relaxed) {
        Outcome::Cancelled
    } else if visitor.halted() || progress.is_stopped() || progress.tally().failed > failed_before {
        Outcome::Failed
    } else {
        Outcome::Complete
    })
}

/// Holds every worker back until all have started: then they walk (`true`), or, when one
/// could not be started, they all return without a look at the volume (`false`).
#[derive(Default)]
struct Gate {
    open: Mutex<Option<bool>>,
    opened: Condvar,
}

impl Gate {
    fn open(&self, walk: bool) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = Some(walk);
        self.opened.notify_all();
    }

    fn wait(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match *open {
                Some(walk) => return walk,
                None => open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

impl<'r> Walk<'_, 'r> {
    fn work(&self, me: usize) {
        let _abort = AbortOnPanic(&self.queue);
        let mut reader = DirReader::with_capacity(BATCH_BYTES);
        while let Some(task) = self
            .queue
            .pop(me, || self.cancelled(), || self.descriptors_scarce())
        {
            match task {
                Task::List(dir) => self.read(dir, &mut reader, true, None),
                Task::ReadOn { dir, rest } => self.read(dir, &mut reader, false, rest),
                Task::Open { parent, name } => {
                    if let Some(dir) = self.open(&parent, name) {
                        drop(parent); // its descriptor may close now
                        self.read(dir, &mut reader, true, None);
                    }
                }
                Task::Pass { huge, from } => {
                    let gather = Gather::new(&huge, from);
                    self.pass(huge, gather, &mut reader, false);
                }
                Task::Visit(slice) => self.visit(slice),
            }
        }
    }

    /// Whether the process holds so many directory descriptors that the walk should close
    /// some before it opens more.
    fn descriptors_scarce(&self) -> bool {
        super::node::open_dirs() >= self.descriptor_budget
    }

    /// Whether the walk must end now: cancelled by the caller, halted by the visitor, or
    /// stopped by a filesystem-wide failure.
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.visitor.halted() || self.progress.is_stopped()
    }

    /// Whether `name` in `dir` is an entry directly below the root left alone as asked;
    /// if so it is counted, and neither changed nor descended.
    fn excluded(&self, dir: &Dir<'r>, name: &CStr) -> bool {
        let excluded = !self.exclude.is_empty()
            && dir.path.is_root()
            && self.exclude.iter().any(|n| n.as_c_str() == name);
        if excluded {
            self.progress.visit();
            self.progress.exclude();
        }
        excluded
    }

    /// Opens a subdirectory from its parent's descriptor, never through a symlink, and
    /// visits it through the descriptor it was opened with.
    fn open(&self, parent: &Arc<Dir<'r>>, name: CString) -> Option<Arc<Dir<'r>>> {
        if self.excluded(parent, &name) {
            return None;
        }
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
            pin: None,
            beneath: self.beneath,
            path: EntryPath::Lazy(&message_path),
        });
        Some(Dir::opened(path, fd))
    }

    /// Reads `dir` a buffer at a time (with `rest`, only what its first slice left of a
    /// huge directory). A full first buffer means a huge directory ([`Walk::huge`]).
    /// Otherwise a full buffer goes back on the queue first, so another worker can read on
    /// while this one works.
    fn read(
        &self,
        dir: Arc<Dir<'r>>,
        reader: &mut DirReader,
        mut first: bool,
        rest: Option<Rest<'r>>,
    ) {
        let left = |e: &DirEntry<'_>| rest.as_ref().is_none_or(|rest| rest.wants(e));
        loop {
            match reader.fill(dir.fd()) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return self.fail(&dir, None, "getdents", &e),
            }
            if reader.was_short() {
                self.batch(&dir, reader.entries().filter(left));
                first = false;
                continue;
            }
            if first {
                return self.huge(dir, reader);
            }
            self.queue.push(Task::ReadOn {
                dir: dir.clone(),
                rest: rest.clone(),
            });
            self.batch(&dir, reader.entries().filter(left));
            return;
        }
    }

    /// The first buffer of a directory bigger than one: its first [`PROBE`] entries are
    /// visited as a buffer's are; if at least half of them needed a change, the rest is
    /// read in passes over ranges of keys (if no other huge directory is), and otherwise a
    /// buffer at a time.
    fn huge(&self, dir: Arc<Dir<'r>>, reader: &mut DirReader) {
        let probe = self.batch(&dir, reader.entries().take(PROBE));
        let huge = if probe.mostly_changed() {
            self.allowance
                .take(&dir, Probed::new(reader.entries().take(PROBE)))
        } else {
            None
        };
        match huge {
            Some(huge) => {
                let gather = Gather::new(&huge, Key::FIRST);
                self.pass(huge, gather, reader, true);
            }
            None => {
                self.queue.push(Task::ReadOn {
                    dir: dir.clone(),
                    rest: None,
                });
                self.batch(&dir, reader.entries().skip(PROBE));
            }
        }
    }

    /// One read of a huge directory, keeping the entries of the next range of keys, then
    /// handed to the directory to give out when the slice before it is done. When the
    /// first pass finds the directory would take too many, the rest after its slice is
    /// read a buffer at a time instead.
    fn pass(
        &self,
        huge: Arc<HugeDir<'r>>,
        mut gather: Gather,
        reader: &mut DirReader,
        first: bool,
    ) {
        if !self.gather(&huge, &mut gather, reader, first) {
            return;
        }
        let in_buffers = first && gather.too_many_passes();
        let mut gathered = gather.finish();
        if in_buffers {
            if let Some(from) = gathered.next() {
                match reader.rewind(huge.dir.fd()) {
                    Ok(()) => self.queue.push(Task::ReadOn {
                        dir: huge.dir.clone(),
                        rest: Some(Rest::new(huge.clone(), from)),
                    }),
                    Err(e) => self.fail(&huge.dir, None, "lseek", &e),
                }
            }
            gathered = gathered.last();
        }
        self.deliver(huge.deliver(gathered));
    }

    /// Reads the directory into `gather`, but for the probed entries: on the first pass
    /// from the buffer in hand on, on the others from the start. `false` if the read failed
    /// (reported) or the walk was cancelled.
    fn gather(
        &self,
        huge: &HugeDir<'r>,
        gather: &mut Gather,
        reader: &mut DirReader,
        first: bool,
    ) -> bool {
        let dir = &huge.dir;
        let mut filled = first;
        if !first {
            if let Err(e) = reader.rewind(dir.fd()) {
                self.fail(dir, None, "lseek", &e);
                return false;
            }
        }
        loop {
            if filled {
                for e in reader.entries().filter(|e| !huge.probed.contains(e)) {
                    gather.offer(Key::of(&e), e.name, e.kind);
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

    /// Queues what a huge directory hands out: the next pass goes on top, so a free worker
    /// starts reading it while the others visit the slice.
    fn deliver(&self, out: Vec<Delivery<'r>>) {
        for delivery in out {
            self.queue.push(match delivery {
                Delivery::Slice(slice) => Task::Visit(slice),
                Delivery::Pass(huge, from) => Task::Pass { huge, from },
            });
        }
    }

    /// Visits one piece of a huge directory's slice, putting the slice back first if it has
    /// more, so other workers take the next pieces. The piece's subdirectories are queued
    /// above it, to be walked before its next piece, as a buffer's are.
    fn visit(&self, slice: Arc<Slice<'r>>) {
        let Some(piece) = slice.take_piece() else {
            return;
        };
        if piece.more {
            self.queue.push(Task::Visit(slice.clone()));
        }
        let dir = &slice.huge.dir;
        let mut subdirs = Vec::new();
        let out = slice.visit_piece(&piece, |name, kind| {
            match kind {
                EntryType::Dir => subdirs.push(Task::Open {
                    parent: dir.clone(),
                    name: name.to_owned(),
                }),
                _ => {
                    self.other(dir, name, kind, true);
                }
            }
            !self.cancelled()
        });
        self.queue.push_all(subdirs);
        self.deliver(out);
    }

    /// Handles a buffer's entries (or some of them): subdirectories go to the queue first,
    /// so idle workers get them at once; everything else is visited here, in inode order
    /// (see [`super::inode_order`]).
    fn batch<'b>(&self, dir: &Arc<Dir<'r>>, entries: impl Iterator<Item = DirEntry<'b>>) -> Count {
        let mut others = Vec::new();
        let mut subdirs = Vec::new();
        for e in entries {
            match e.kind {
                EntryType::Dir => subdirs.push(Task::Open {
                    parent: dir.clone(),
                    name: e.name.to_owned(),
                }),
                _ => others.push(e),
            }
        }
        self.queue.push_all(subdirs);
        others.sort_unstable_by_key(|e| e.ino);
        let mut count = Count::default();
        for entry in others {
            if self.cancelled() {
                break;
            }
            count.visited += 1;
            count.changed += usize::from(self.other(dir, entry.name, entry.kind, true));
        }
        count
    }

    /// Visits an entry that is not (or, for `d_type` unknown, may not be) a directory.
    /// Whether it changed something.
    fn other(&self, dir: &Arc<Dir<'r>>, name: &CStr, kind: EntryType, may_open: bool) -> bool {
        if self.excluded(dir, name) {
            return false;
        }
        let mut pinned = None;
        let stat = if kind == EntryType::Unknown || self.stat_all {
            match self.stat(dir, name) {
                Ok((stat, pin)) => {
                    pinned = pin;
                    Some(stat)
                }
                Err((_, e)) if self.is_mount(&e) => {
                    self.progress.visit();
                    let path = dir.path.path_of(self.root_path, Some(name));
                    self.progress.skip_mount(path);
                    return false;
                }
                Err((op, e)) => {
                    self.fail(dir, Some(name), op, &e);
                    return false;
                }
            }
        } else {
            None
        };
        if stat.is_some_and(|s| s.is_dir()) {
            self.reopen(dir, name, may_open);
            return false;
        }
        self.progress.visit();
        if stat.is_some_and(|s| !self.on_root_mount(&s)) {
            let path = dir.path.path_of(self.root_path, Some(name));
            self.progress.skip_mount(path);
            return false;
        }
        if let Some(stat) = &stat {
            self.progress.note(stat);
        }
        let message_path = || dir.path.path_of(self.root_path, Some(name));
        self.apply(&Entry {
            parent: dir.fd(),
            name,
            stat: stat.as_ref(),
            fd: None,
            pin: pinned.as_ref().map(|p| p.as_fd()),
            beneath: self.beneath,
            path: EntryPath::Lazy(&message_path),
        })
    }

    /// An entry's attributes: by name where no mount can appear (or mounts are crossed);
    /// otherwise read through a pin on the root's mount, which the entry's changes then go
    /// through. On failure, the operation that failed.
    fn stat(
        &self,
        dir: &Dir<'r>,
        name: &CStr,
    ) -> Result<(Stat, Option<rustix::fd::OwnedFd>), (&'static str, io::Error)> {
        let Some(mount) = self.beneath else {
            return sys::stat_at(dir.fd(), name)
                .map(|stat| (stat, None))
                .map_err(|e| ("stat", e));
        };
        let pin = sys::pin_beneath(dir.fd(), name, mount).map_err(|e| ("open", e))?;
        let stat = sys::stat_fd(pin.as_fd()).map_err(|e| ("stat", e))?;
        Ok((stat, Some(pin)))
    }

    /// Whether `err` says a name is a mount point (`EXDEV` from a pin on the root's mount).
    fn is_mount(&self, err: &io::Error) -> bool {
        self.beneath.is_some() && err.raw_os_error() == Some(libc::EXDEV)
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

    /// Has the visitor visit the entry. Whether it changed something.
    fn apply(&self, entry: &Entry<'_>) -> bool {
        match self.visitor.visit(entry) {
            Ok(visited) => {
                self.progress.record(visited);
                visited == Visited::Changed
            }
            Err(e) if self.is_mount(&e.err) => {
                self.progress.skip_mount(entry.path());
                false
            }
            Err(e) => {
                self.progress.fail(Failure::new(entry.path(), e.op, &e.err));
                false
            }
        }
    }

    fn on_root_mount(&self, stat: &Stat) -> bool {
        self.cross_mounts || stat.mnt_id == self.root_mnt
    }

    /// An entry that failed before it was visited (or a directory's listing, standing for
    /// the entries never met): counted as visited too, so every entry is counted once.
    fn fail(&self, dir: &Dir<'r>, name: Option<&CStr>, op: &'static str, err: &io::Error) {
        self.progress.visit();
        let path = dir.path.path_of(self.root_path, name);
        self.progress.fail(Failure::new(path, op, err));
    }
}

/// What a batch did: how many entries it visited (not counting subdirectories), how many
/// of them it changed.
#[derive(Default)]
struct Count {
    visited: usize,
    changed: usize,
}

impl Count {
    /// Whether at least half of the entries visited were changed.
    fn mostly_changed(&self) -> bool {
        self.visited > 0 && self.changed * 2 >= self.visited
    }
}

/// Ends the walk if its worker panics, so the other workers finish and the panic reaches
/// the caller (`thread::scope` re-raises it) instead of every thread waiting forever.
struct AbortOnPanic<'q, 'r>(&'q Queue<'r>);

impl Drop for AbortOnPanic<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort();
        }
    }
}

/// Directory descriptors a walk may hold before it frees some first: the process's
/// `RLIMIT_NOFILE`, less a quarter (at least 16 per worker) for everything else the
/// process has open and for the descriptors workers open while it frees them.
fn descriptor_budget(threads: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let reserve = (limit / 4).max(16 * threads);
    limit.saturating_sub(reserve).max(1)
}
