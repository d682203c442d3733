//! One pass that prepares a volume: fsGroup ownership and the SELinux label together.
//!
//! kubelet walks a volume to chown and chmod it, then the container runtime walks it again
//! to relabel. Both results depend only on each entry's own attributes, so one walk can do
//! both: read each inode once, write only what differs, and change the root last, only
//! when everything below succeeded. A pass that fails or is interrupted therefore leaves
//! the root as it was, and the next OnRootMismatch call walks again.

mod report;
mod visitor;

pub use report::{Report, SkipReason};

use crate::ownership::{ChangePolicy, Ownership};
use crate::selinux::{self, Context};
use crate::walk::{self, Failure, Outcome, Progress, Root, RootError, Visitor, WalkOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use visitor::PassVisitor;

/// What a volume must end up with.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// fsGroup ownership; `None` leaves groups and modes alone.
    pub ownership: Option<Ownership>,
    /// The SELinux file label to apply recursively; `None` leaves labels alone.
    pub label: Option<Context>,
    /// `OnRootMismatch` skips the walk when the root already has everything asked for.
    pub change_policy: ChangePolicy,
    /// A filesystem that cannot store labels (`EOPNOTSUPP`) is "relabel not needed", as the
    /// container runtimes treat it, instead of an error.
    pub ignore_unsupported_labels: bool,
}

/// How to run a pass.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub walk: WalkOptions,
    /// Report what would change without changing anything.
    pub dry_run: bool,
}

/// Why a pass was refused before anything was changed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("{path}: refusing to change a system directory ({what})")]
    RefusedRoot { path: String, what: String },
    #[error("{path}: the filesystem cannot store SELinux labels (EOPNOTSUPP); mount it with -o context= instead, or pass --ignore-unsupported to treat the relabel as not needed")]
    LabelsUnsupported { path: String },
    #[error("nothing to do: give an fsGroup, an SELinux label, or both")]
    NothingAsked,
}

/// Opens `path` and runs `job` on it. See [`run`].
pub fn prepare(
    path: &Path,
    job: &Job,
    options: &Options,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<Report, PrepareError> {
    let root = Root::open(path)?;
    run(&root, job, options, progress, cancel)
}

/// Runs `job` on an open root: refuses system directories, applies the OnRootMismatch
/// shortcut, walks everything below, and changes the root last, only if all of that
/// succeeded.
pub fn run(
    root: &Root,
    job: &Job,
    options: &Options,
    progress: &Progress,
    cancel: &AtomicBool,
) -> Result<Report, PrepareError> {
    let started = Instant::now();
    if job.ownership.is_none() && job.label.is_none() {
        return Err(PrepareError::NothingAsked);
    }
    if let Some(what) = selinux::refused_root(root.stat()) {
        return Err(PrepareError::RefusedRoot {
            path: root.path().display().to_string(),
            what,
        });
    }
    let visitor = PassVisitor::new(job, options.dry_run);
    if job.label.is_some() && !visitor.root_stores_labels(root) {
        if job.ignore_unsupported_labels {
            return finish_without_labels(root, job, options, progress, cancel, started);
        }
        return Err(PrepareError::LabelsUnsupported {
            path: root.path().display().to_string(),
        });
    }
    if job.change_policy == ChangePolicy::OnRootMismatch && visitor.root_matches(root) {
        progress.visit();
        progress.record(walk::Visited::Unchanged);
        return Ok(Report::new(
            root,
            job,
            options,
            progress,
            Some(SkipReason::OnRootMismatch),
            started,
        ));
    }
    raise_descriptor_limit();
    let outcome = walk::walk(root, &options.walk, &visitor, progress, cancel);
    if outcome == Outcome::Complete {
        change_root(root, &visitor, progress);
    }
    let mut report = Report::new(root, job, options, progress, None, started);
    report.outcome = outcome_name(outcome, progress);
    Ok(report)
}

/// The relabel part is dropped because the filesystem cannot hold labels; the ownership
/// part, if any, still runs.
fn finish_without_labels(
    root: &Root,
    job: &Job,
    options: &Options,
    progress: &Progress,
    cancel: &AtomicBool,
    started: Instant,
) -> Result<Report, PrepareError> {
    tracing::info!(path = %root.path().display(), "filesystem cannot store SELinux labels; relabel not needed");
    let without = Job {
        label: None,
        ..job.clone()
    };
    if without.ownership.is_none() {
        return Ok(Report::new(
            root,
            job,
            options,
            progress,
            Some(SkipReason::LabelsUnsupported),
            started,
        ));
    }
    let mut report = run(root, &without, options, progress, cancel)?;
    report.labels_unsupported = true;
    Ok(report)
}

fn change_root(root: &Root, visitor: &PassVisitor, progress: &Progress) {
    progress.visit();
    let entry = walk::Entry::root(root);
    match visitor.visit(&entry) {
        Ok(visited) => progress.record(visited),
        Err(e) => progress.fail_root(Failure::new(root.path().to_path_buf(), e.op, &e.err)),
    }
}

fn outcome_name(outcome: Outcome, progress: &Progress) -> &'static str {
    match outcome {
        Outcome::Cancelled => "cancelled",
        Outcome::Failed => "partial",
        Outcome::Complete if progress.tally().failed > 0 => "partial",
        Outcome::Complete => "complete",
    }
}

/// One descriptor stays open per directory level being walked.
fn raise_descriptor_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let limit = crate::sys::raise_fd_limit();
        tracing::debug!(limit, "RLIMIT_NOFILE");
    });
}

pub(crate) fn is_unsupported(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EOPNOTSUPP)
}
