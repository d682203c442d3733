//! Prepare jobs: joining, queueing, limits, cancellation and the event stream.
//!
//! kubelet retries a mount every few seconds while a pod waits, and several pods may mount
//! one volume; a naive agent would start a fresh walk of a million inodes for each call.
//! Here a call for the same path with the same parameters as the newest job on that path
//! *joins* it: it sees that job's events from the moment it joined and the same final
//! result. A call with other parameters *queues* behind the jobs already on the path, so two
//! passes never race on one tree. A job whose callers all went away keeps running: the next
//! retry joins it instead of starting over. Only `Cancel` (or shutdown) stops it, and a
//! cancelled pass leaves the root unchanged, so the next OnRootMismatch call walks again.
//!
//! `--max-jobs` bounds the walks running at once and `--threads` the walker threads of each,
//! so the node stays responsive; walker threads run at a lower priority (`--walk-nice`) so
//! the agent's own answers never wait behind them. An OnRootMismatch job first checks the root without taking
//! a slot: a call that skips answers at once even while every slot is walking.

use super::convert::{self, policy_to_proto};
use super::metrics::{JobEnd, JobResult, Metrics, Work};
use super::proto::{self, prepare_event::Event, JobState, PrepareEvent};
use super::slow::{self, SlowTimes};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch, Semaphore};
use tonic::Status;
use volsec_core::ownership::{ChangePolicy, Ownership};
use volsec_core::prepare::{self, Job, Options, PassOutcome, Report};
use volsec_core::selinux::Context;
use volsec_core::walk::{Progress, WalkOptions};

/// What a caller asks for. Two calls join one job exactly when their requests are equal.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Checked and normalized (see [`super::security::AllowedRoots::check`]).
    pub path: PathBuf,
    pub ownership: Option<Ownership>,
    pub label: Option<Context>,
    pub change_policy: ChangePolicy,
    pub ignore_unsupported_labels: bool,
    pub dry_run: bool,
    pub cross_mounts: bool,
    /// kubelet's name of the volume's plugin, for kubelet's metric (`volume_plugin`).
    pub volume_plugin: String,
}

impl Request {
    fn job(&self) -> Job {
        Job {
            ownership: self.ownership,
            label: self.label.clone(),
            change_policy: self.change_policy,
            ignore_unsupported_labels: self.ignore_unsupported_labels,
        }
    }

    /// What this request does, as the metrics name it.
    fn work(&self) -> Work {
        match (self.ownership.is_some(), self.label.is_some()) {
            (true, true) => Work::fs_group_and_relabel,
            (false, true) => Work::relabel,
            _ => Work::fs_group,
        }
    }
}

/// The agent's limits and timings.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Walks running at once; more wait in the queue.
    pub max_jobs: usize,
    /// Walker threads of each walk (0: one per CPU).
    pub threads: usize,
    /// Failures kept with their paths per job.
    pub max_errors: usize,
    /// kubelet's slow-pass messages.
    pub slow: SlowTimes,
    /// How often running jobs send a progress event.
    pub progress_every: Duration,
    /// The nice value of walker threads (0 keeps the agent's).
    pub walk_nice: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_jobs: 2,
            threads: 0,
            max_errors: 100,
            slow: SlowTimes::default(),
            progress_every: Duration::from_secs(1),
            walk_nice: 10,
        }
    }
}

/// One job: a pass over one path with one set of parameters.
pub struct JobEntry {
    pub id: String,
    pub request: Request,
    progress: Progress,
    cancel: AtomicBool,
    cancel_tx: watch::Sender<bool>,
    events: broadcast::Sender<PrepareEvent>,
    running: AtomicBool,
    walk_started: Mutex<Option<Instant>>,
    /// When the job left the queue (the root check or the walk began).
    work_started: Mutex<Option<Instant>>,
    callers: AtomicUsize,
    done: watch::Sender<bool>,
}

impl JobEntry {
    fn new(id: String, request: Request, max_errors: usize) -> JobEntry {
        JobEntry {
            id,
            request,
            progress: Progress::new(max_errors),
            cancel: AtomicBool::new(false),
            cancel_tx: watch::channel(false).0,
            events: broadcast::channel(256).0,
            running: AtomicBool::new(false),
            walk_started: Mutex::new(None),
            work_started: Mutex::new(None),
            callers: AtomicUsize::new(0),
            done: watch::channel(false).0,
        }
    }

    fn state(&self) -> JobState {
        if self.running.load(Ordering::Relaxed) {
            JobState::Running
        } else {
            JobState::Queued
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    fn request_cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.cancel_tx.send_replace(true);
    }

    async fn cancelled(&self) {
        let mut rx = self.cancel_tx.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    async fn finished(&self) {
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// A caller's stream ended (finished or went away).
    pub fn detach(&self) {
        self.callers.fetch_sub(1, Ordering::Relaxed);
    }

    fn event(&self, event: Event) -> PrepareEvent {
        PrepareEvent {
            job_id: self.id.clone(),
            event: Some(event),
        }
    }

    fn send(&self, event: Event) {
        // No receiver is fine: every caller went away and the job runs on.
        let _ = self.events.send(self.event(event));
    }

    fn progress(&self) -> proto::Progress {
        let t = self.progress.tally();
        let elapsed = self
            .walk_started
            .lock()
            .expect("lock")
            .map_or(Duration::ZERO, |s| s.elapsed());
        proto::Progress {
            visited: t.visited,
            changed: t.changed,
            unchanged: t.unchanged,
            failed: t.failed,
            vanished: t.vanished,
            elapsed_ms: elapsed.as_millis() as u64,
            inodes_per_second: (t.visited as f64 / elapsed.as_secs_f64().max(1e-3)) as u64,
        }
    }

    pub fn info(&self) -> proto::JobInfo {
        let r = &self.request;
        proto::JobInfo {
            job_id: self.id.clone(),
            path: r.path.display().to_string(),
            state: self.state() as i32,
            fs_group: r.ownership.map(|o| o.fs_group),
            read_only: r.ownership.is_some_and(|o| o.read_only),
            change_policy: policy_to_proto(r.change_policy) as i32,
            selinux_context: r
                .label
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            dry_run: r.dry_run,
            callers: self.callers.load(Ordering::Relaxed) as u32,
            progress: Some(self.progress()),
            cancelling: self.is_cancelled(),
        }
    }
}

/// A call attached to a job: its first event and the job's events from now on.
pub struct Attached {
    pub job: Arc<JobEntry>,
    pub accepted: PrepareEvent,
    pub events: broadcast::Receiver<PrepareEvent>,
}

/// How a job ended.
struct Finished {
    result: proto::Result,
    metric: JobResult,
    report: Option<Report>,
}

impl Finished {
    fn from_report(report: Report) -> Finished {
        let metric = match report.outcome {
            PassOutcome::Skipped => JobResult::skipped,
            PassOutcome::Cancelled => JobResult::cancelled,
            PassOutcome::Partial => JobResult::partial,
            PassOutcome::Complete => JobResult::complete,
        };
        Finished {
            result: convert::result_from_report(&report),
            metric,
            report: Some(report),
        }
    }

    fn refused(error: String) -> Finished {
        Finished {
            result: proto::Result {
                outcome: proto::Outcome::Refused as i32,
                error,
                ..Default::default()
            },
            metric: JobResult::refused,
            report: None,
        }
    }

    fn cancelled_in_queue() -> Finished {
        Finished {
            result: proto::Result {
                outcome: proto::Outcome::Cancelled as i32,
                error: "cancelled before it started; nothing was changed".into(),
                ..Default::default()
            },
            metric: JobResult::cancelled,
            report: None,
        }
    }
}

/// Raises the calling thread's nice value (Linux keeps one per thread, and new threads
/// inherit it), so walks yield the CPU to the agent's answers. Lowering priority needs no
/// privilege; failing to is harmless.
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::debug!("cannot lower the walk's priority: {e}");
    }
}

/// Every job the agent holds, by path, oldest first.
#[derive(Default)]
struct State {
    by_path: HashMap<PathBuf, Vec<Arc<JobEntry>>>,
    next_id: u64,
}

impl State {
    fn jobs(&self) -> impl Iterator<Item = &Arc<JobEntry>> {
        self.by_path.values().flatten()
    }
}

/// The job table.
pub struct Jobs {
    state: Mutex<State>,
    slots: Arc<Semaphore>,
    limits: Limits,
    metrics: Arc<Metrics>,
    accepting: AtomicBool,
    live: watch::Sender<usize>,
}

impl Jobs {
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> Arc<Jobs> {
        Arc::new(Jobs {
            state: Mutex::default(),
            slots: Arc::new(Semaphore::new(limits.max_jobs.max(1))),
            limits,
            metrics,
            accepting: AtomicBool::new(true),
            live: watch::channel(0).0,
        })
    }

    /// Joins the newest job on the path if it has the same parameters, or queues a new one.
    pub fn submit(self: &Arc<Self>, request: Request) -> Result<Attached, Status> {
        let mut st = self.state.lock().expect("lock");
        if !self.accepting.load(Ordering::Relaxed) {
            return Err(Status::unavailable(
                "the agent is shutting down and takes no new jobs; retry against the next agent",
            ));
        }
        let queue = st.by_path.entry(request.path.clone()).or_default();
        let ahead = queue.len();
        if let Some(tail) = queue
            .last()
            .filter(|t| t.request == request && !t.is_cancelled())
        {
            let job = tail.clone();
            return Ok(self.attach(job, true, ahead.saturating_sub(1)));
        }
        // Wait for every earlier job: one of them may be cancelled and leave early.
        let earlier: Vec<Arc<JobEntry>> = queue.clone();
        st.next_id += 1;
        let id = format!("job-{}", st.next_id);
        let job = Arc::new(JobEntry::new(id, request, self.limits.max_errors));
        st.by_path
            .get_mut(&job.request.path)
            .expect("queue just created")
            .push(job.clone());
        self.live.send_modify(|n| *n += 1);
        self.metrics.jobs_queued.inc();
        tracing::info!(job = %job.id, path = %volsec_core::display::path(&job.request.path), queued_behind = ahead, "job accepted");
        tokio::spawn(self.clone().drive(job.clone(), earlier));
        Ok(self.attach(job, false, ahead))
    }

    /// Like [`Jobs::submit`], but joins any job on the path with the same parameters, not
    /// only the newest. A CSI NodePublishVolume retry belongs to the pass its first call
    /// started, even when a pass with other parameters queued behind that one since; with
    /// `submit` it would queue a second walk behind both.
    pub fn submit_or_join(self: &Arc<Self>, request: Request) -> Result<Attached, Status> {
        {
            let st = self.state.lock().expect("lock");
            let same = st.by_path.get(&request.path).and_then(|queue| {
                queue
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(_, j)| j.request == request && !j.is_cancelled())
            });
            if let (Some((ahead, job)), true) = (same, self.accepting.load(Ordering::Relaxed)) {
                // Attached under the lock, like `submit`: the result is sent under it too.
                return Ok(self.attach(job.clone(), true, ahead));
            }
        }
        self.submit(request)
    }

    fn attach(&self, job: Arc<JobEntry>, joined: bool, queued_behind: usize) -> Attached {
        job.callers.fetch_add(1, Ordering::Relaxed);
        self.metrics.call(joined);
        let accepted = job.event(Event::Accepted(proto::Accepted {
            joined,
            state: job.state() as i32,
            queued_behind: queued_behind as u32,
        }));
        let events = job.events.subscribe();
        Attached {
            job,
            accepted,
            events,
        }
    }

    /// Cancels the job with this id, or every job on this path. Returns the ids cancelled.
    pub fn cancel(&self, job_id: &str, path: Option<&PathBuf>) -> Vec<String> {
        let st = self.state.lock().expect("lock");
        let hits: Vec<&Arc<JobEntry>> = st
            .jobs()
            .filter(|j| j.id == job_id || path.is_some_and(|p| *p == j.request.path))
            .collect();
        for job in &hits {
            tracing::info!(job = %job.id, path = %volsec_core::display::path(&job.request.path), "cancelling");
            job.request_cancel();
        }
        hits.iter().map(|j| j.id.clone()).collect()
    }

    pub fn list(&self) -> Vec<proto::JobInfo> {
        let st = self.state.lock().expect("lock");
        let mut jobs: Vec<_> = st.jobs().map(|j| j.info()).collect();
        jobs.sort_by_key(|j| j.job_id[4..].parse::<u64>().unwrap_or(0));
        jobs
    }

    /// Shutdown, first step: new Prepare calls get Unavailable.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Relaxed);
    }

    /// Waits until no job is left, or `timeout`; true if none is left.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let mut rx = self.live.subscribe();
        let drained = tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok();
        drained
    }

    pub fn cancel_all(&self) -> usize {
        let st = self.state.lock().expect("lock");
        let mut n = 0;
        for job in st.jobs() {
            job.request_cancel();
            n += 1;
        }
        n
    }

    async fn drive(self: Arc<Self>, job: Arc<JobEntry>, earlier: Vec<Arc<JobEntry>>) {
        let finished = self.run(&job, earlier).await;
        self.finish(&job, finished);
    }

    async fn run(&self, job: &Arc<JobEntry>, earlier: Vec<Arc<JobEntry>>) -> Finished {
        for prev in earlier {
            tokio::select! {
                _ = prev.finished() => {}
                _ = job.cancelled() => return Finished::cancelled_in_queue(),
            }
        }
        if job.is_cancelled() {
            return Finished::cancelled_in_queue();
        }
        *job.work_started.lock().expect("lock") = Some(Instant::now());
        if job.request.change_policy == ChangePolicy::OnRootMismatch {
            match self.probe(job).await {
                Ok(Some(report)) => return Finished::from_report(report),
                Ok(None) => {}
                Err(e) => return Finished::refused(e),
            }
        }
        let _slot = tokio::select! {
            slot = self.slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = job.cancelled() => return Finished::cancelled_in_queue(),
        };
        self.metrics.jobs_queued.dec();
        self.metrics.jobs_running.inc();
        job.running.store(true, Ordering::Relaxed);
        job.send(Event::Progress(job.progress()));
        match self.walk(job).await {
            Ok(report) => Finished::from_report(report),
            Err(e) => Finished::refused(e),
        }
    }

    fn options(&self, request: &Request, threads: usize) -> Options {
        Options {
            walk: WalkOptions {
                threads,
                cross_mounts: request.cross_mounts,
                max_errors: self.limits.max_errors,
                ..WalkOptions::default()
            },
            dry_run: request.dry_run,
            listing: None,
        }
    }

    /// The checks that need only the root (refusals, the OnRootMismatch test), without a
    /// walker slot: `Some(report)` when the root settles the job.
    async fn probe(&self, job: &Arc<JobEntry>) -> Result<Option<Report>, String> {
        let request = job.request.clone();
        let options = self.options(&request, 1);
        tokio::task::spawn_blocking(move || {
            prepare::check_root(&request.path, &request.job(), &options)
        })
        .await
        .map_err(|e| format!("the root check failed: {e}"))?
        .map_err(|e| e.to_string())
    }

    /// The pass itself, on a blocking thread, with progress events and kubelet's slow-pass
    /// messages while it runs.
    async fn walk(&self, job: &Arc<JobEntry>) -> Result<Report, String> {
        self.metrics.walk_started();
        let started = Instant::now();
        *job.walk_started.lock().expect("lock") = Some(started);
        let options = self.options(&job.request, self.limits.threads);
        let j = job.clone();
        let nice = self.limits.walk_nice;
        let mut pass = tokio::task::spawn_blocking(move || {
            // The walker threads inherit the priority of the thread that starts them; that
            // thread is a fresh one, so the pool's threads (which answer root checks) keep
            // theirs.
            std::thread::scope(|s| {
                s.spawn(|| {
                    lower_priority(nice);
                    prepare::prepare(
                        &j.request.path,
                        &j.request.job(),
                        &options,
                        &j.progress,
                        &j.cancel,
                    )
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        });
        let every = self.limits.progress_every.max(Duration::from_millis(10));
        let mut tick = tokio::time::interval_at((started + every).into(), every);
        let slow = self.limits.slow;
        let ownership = job.request.ownership.is_some();
        let dir = slow::dir_for_messages(&job.request.path);
        let mut next_slow = started + slow.after;
        let mut first = true;
        loop {
            tokio::select! {
                done = &mut pass => {
                    return match done {
                        Ok(Ok(report)) => Ok(report),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(format!("the pass failed: {e}")),
                    };
                }
                _ = tick.tick() => job.send(Event::Progress(job.progress())),
                _ = tokio::time::sleep_until(next_slow.into()), if ownership => {
                    self.slow_messages(job, &dir, first);
                    first = false;
                    next_slow += slow.every.max(Duration::from_millis(10));
                }
            }
        }
    }

    fn slow_messages(&self, job: &JobEntry, dir: &str, first: bool) {
        let warnings = if first {
            slow::first(dir).to_vec()
        } else {
            vec![slow::processed(dir, job.progress.tally().visited)]
        };
        for w in warnings {
            if w.reason == "VolumeOwnershipProgress" {
                tracing::info!(job = %job.id, "{}", volsec_core::display::text(&w.message));
            } else {
                tracing::warn!(job = %job.id, reason = %w.reason, "{}", volsec_core::display::text(&w.message));
            }
            job.send(Event::Warning(w));
        }
    }

    /// Records the end of a job and sends its result. The job leaves the table under the
    /// same lock that joins take, so a caller either joined before the result was sent (and
    /// receives it) or finds no job and starts a new one.
    fn finish(&self, job: &Arc<JobEntry>, finished: Finished) {
        let seconds = job
            .work_started
            .lock()
            .expect("lock")
            .map_or(0.0, |s| s.elapsed().as_secs_f64());
        self.metrics.job_finished(JobEnd {
            work: job.request.work(),
            result: finished.metric,
            volume_plugin: &job.request.volume_plugin,
            dry_run: job.request.dry_run,
            seconds,
            report: finished.report.as_ref(),
        });
        if job.running.load(Ordering::Relaxed) {
            self.metrics.jobs_running.dec();
        } else {
            self.metrics.jobs_queued.dec();
        }
        tracing::info!(
            job = %job.id,
            path = %volsec_core::display::path(&job.request.path),
            outcome = ?finished.result.outcome(),
            visited = finished.result.visited,
            changed = finished.result.changed,
            failed = finished.result.failed,
            error = %finished.result.error,
            "job finished"
        );
        {
            let mut st = self.state.lock().expect("lock");
            if let Some(queue) = st.by_path.get_mut(&job.request.path) {
                queue.retain(|j| !Arc::ptr_eq(j, job));
                if queue.is_empty() {
                    st.by_path.remove(&job.request.path);
                }
            }
            job.send(Event::Result(finished.result));
        }
        job.done.send_replace(true);
        self.live.send_modify(|n| *n -= 1);
    }
}
