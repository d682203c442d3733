//! The shared LIFO of directories waiting to be opened or read, with the end-of-walk test:
//! the walk is over when the stack is empty and every worker is waiting on it.

use super::inode_order::{HugeDir, Key, Rest, Slice};
use super::node::Dir;
use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

pub(super) enum Task<'r> {
    /// A subdirectory found by name, not yet opened: queued directories hold no descriptor
    /// of their own, only a share of their parent's.
    Open { parent: Arc<Dir<'r>>, name: CString },
    /// An open directory, not read yet.
    List(Arc<Dir<'r>>),
    /// An open directory some buffers of which have been read, with entries left to read;
    /// with `rest`, only what the first slice of a huge directory left.
    ReadOn {
        dir: Arc<Dir<'r>>,
        rest: Option<Rest<'r>>,
    },
    /// A huge directory to read again, for the entries from `from` on.
    Pass { huge: Arc<HugeDir<'r>>, from: Key },
    /// A slice of a huge directory with pieces left to take.
    Visit(Arc<Slice<'r>>),
}

struct State<'r> {
    tasks: Vec<Task<'r>>,
    /// Workers waiting: for a task, or (over the limit) for the limit to grow.
    waiting: usize,
    /// Workers under the limit waiting for a task.
    idle: usize,
    done: bool,
}

pub(super) struct Queue<'r> {
    state: Mutex<State<'r>>,
    ready: Condvar,
    /// Where workers over the limit wait.
    parked: Condvar,
    workers: usize,
    /// Workers that may take tasks: those numbered below it (all, unless the walk's
    /// concurrency adapts: see [`super::concurrency`]).
    limit: AtomicUsize,
}

impl<'r> Queue<'r> {
    pub fn new(workers: usize, first: Task<'r>) -> Queue<'r> {
        Queue {
            state: Mutex::new(State {
                tasks: vec![first],
                waiting: 0,
                idle: 0,
                done: false,
            }),
            ready: Condvar::new(),
            parked: Condvar::new(),
            workers,
            limit: AtomicUsize::new(workers),
        }
    }

    /// Lets only workers numbered below `limit` take tasks (at least one).
    pub fn set_limit(&self, limit: usize) {
        let grew = limit.max(1) > self.limit.swap(limit.max(1), Ordering::Relaxed);
        if grew {
            let _state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.parked.notify_all();
        }
    }

    /// Whether a worker under the limit is waiting for a task.
    pub fn has_idle(&self) -> bool {
        self.state.lock().is_ok_and(|s| s.idle > 0)
    }

    /// Whether the walk is over.
    pub fn is_done(&self) -> bool {
        self.state.lock().map_or(true, |s| s.done)
    }

    pub fn push(&self, task: Task<'r>) {
        self.state.lock().expect("lock").tasks.push(task);
        self.ready.notify_one();
    }

    pub fn push_all(&self, tasks: impl IntoIterator<Item = Task<'r>>) {
        let mut state = self.state.lock().expect("lock");
        let before = state.tasks.len();
        state.tasks.extend(tasks);
        let added = state.tasks.len() - before;
        drop(state);
        match added {
            0 => {}
            1 => self.ready.notify_one(),
            _ => self.ready.notify_all(),
        }
    }

    /// Ends the walk for every worker: a worker that panicked will never come back to
    /// wait, so the others must not wait for it.
    pub fn abort(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.end(&mut state);
    }

    /// Ends the walk: no task is handed out any more, and every waiting worker wakes to
    /// learn it.
    fn end(&self, state: &mut State<'r>) {
        state.done = true;
        state.tasks.clear();
        self.ready.notify_all();
        self.parked.notify_all();
    }

    /// The next task, or `None` when the walk is over or `stop` says it must end. With
    /// `scarce` descriptors, a task that frees one comes first (see [`freeing`]).
    ///
    /// Worker `me` waits while it is numbered at or over the limit.
    pub fn pop(
        &self,
        me: usize,
        stop: impl Fn() -> bool,
        scarce: impl Fn() -> bool,
    ) -> Option<Task<'r>> {
        let mut state = self.state.lock().expect("lock");
        loop {
            if stop() {
                self.end(&mut state);
            }
            if state.done {
                return None;
            }
            if me >= self.limit.load(Ordering::Relaxed) {
                if !state.tasks.is_empty() {
                    // A wake-up meant for a worker that may work: pass it on.
                    self.ready.notify_one();
                }
                state.waiting += 1;
                if state.waiting == self.workers && state.tasks.is_empty() {
                    self.end(&mut state);
                    return None;
                }
                state = self.parked.wait(state).expect("lock");
                state.waiting -= 1;
                continue;
            }
            if scarce() {
                let top = state.tasks.len();
                let found = state
                    .tasks
                    .iter()
                    .rev()
                    .take(FREEING_SCAN)
                    .position(freeing);
                if let Some(from_top) = found {
                    return Some(state.tasks.remove(top - 1 - from_top));
                }
            }
            if let Some(task) = state.tasks.pop() {
                return Some(task);
            }
            state.waiting += 1;
            if state.waiting == self.workers {
                state.done = true;
                self.ready.notify_all();
                self.parked.notify_all();
                return None;
            }
            state.idle += 1;
            state = self.ready.wait(state).expect("lock");
            state.idle -= 1;
            state.waiting -= 1;
        }
    }
}

/// How far below the top of the stack a freeing task is looked for: the ones a deep walk
/// leaves behind sit just below what it is doing now.
const FREEING_SCAN: usize = 64;

/// Whether running `task` closes a descriptor: it opens the last subdirectory still waiting
/// on its parent, whose descriptor closes as soon as that one is open.
///
/// Taken last-in first-out, a deep tree with a second subdirectory at every level leaves
/// one of them waiting at each level, each keeping its parent open: one descriptor per
/// level. When descriptors run short those waiting ones go first; each closes its parent.
fn freeing(task: &Task<'_>) -> bool {
    matches!(task, Task::Open { parent, .. } if Arc::strong_count(parent) == 1)
}
