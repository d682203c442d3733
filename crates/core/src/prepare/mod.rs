//! One pass that prepares a volume: fsGroup ownership and the SELinux label together.
//!
//! kubelet walks a volume to chown and chmod it, then the container runtime walks it again
//! to relabel. Both results depend only on each entry's own attributes, so one walk can do
//! both: read each inode once, write only what differs, and change the root last, only
//! when everything below succeeded. A pass that fails or is interrupted therefore leaves
//! the root as it was, and the next OnRootMismatch call walks again.

mod list;
mod lock;
mod report;
mod visitor;

pub use list::{EntryChange, FromTo, Listing, Mode};
pub use lock::{lock_volume, set_lock_wait, LockError, VolumeLock, LOCK_DIR};
pub use report::{NotPermitted, PassOutcome, Report, SkipReason, Summary};

use crate::ownership::{ChangePolicy, Ownership, Powers};
use crate::selinux::{self, Context};
use crate::walk::{self, Failure, Outcome, Progress, Root, RootError, Visitor, WalkOptions};
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
    /// Threads, nested mounts and how many failures to keep.
    pub walk: WalkOptions,
    /// Report what would change without changing anything.
    pub dry_run: bool,
    /// With `dry_run`, where each entry that would change is handed, with what would change.
    pub listing: Option<Listing>,
}

/// Why a pass was refused before anything was changed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The root could not be opened as a directory without following a symlink.
    #[error(transparent)]
    Root(#[from] RootError),
    /// Another pass holds the volume ([`lock_volume`]): one pass per volume at a time.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The root is a system directory (`/`, `/usr`, `$HOME`, ...): a recursive chown or
    /// relabel there would break the node.
    #[error("{path}: refusing to change a system directory ({what})")]
    RefusedRoot {
        /// The root's path.
        path: String,
        /// Which system directory it is, e.g. `it is /usr`.
        what: String,
    },
    /// A relabel was asked on a filesystem that cannot store labels, and the job does not
    /// allow treating that as "relabel not needed".
    #[error("{path}: the filesystem cannot store SELinux labels (EOPNOTSUPP); mount it with -o context= instead, or pass --ignore-unsupported to treat the relabel as not needed")]
    LabelsUnsupported {
        /// The root's path.
        path: String,
    },
    /// The job asks for neither an fsGroup nor a label.
    #[error("nothing to do: give an fsGroup, an SELinux label, or both")]
    NothingAsked,
    /// The label cannot be used on this node (invalid in the loaded policy, unreadable).
    #[error(transparent)]
    Label(#[from] selinux::CheckError),
    /// The walk's threads could not be started; nothing was changed.
    #[error("{path}: {err}")]
    Threads {
        /// The root's path.
        path: String,
        /// Which thread could not be started, and why.
        err: walk::SpawnError,
    },
    /// Ownership was asked of a process that may not chown (not root, or root without
    /// `CAP_CHOWN`): every entry would fail with `EPERM`, so nothing is tried.
    #[error("{path}: changing groups needs CAP_CHOWN, which this process (uid {uid}) lacks; run volsec as root, or give its container the CHOWN capability; nothing was changed")]
    NoChownCapability {
        /// The root's path.
        path: String,
        /// The process's effective uid.
        uid: u32,
    },
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
    let powers = Powers::current();
    if !options.dry_run && job.ownership.is_some() && !powers.chown {
        // Said before the lock, which a process without privileges cannot take either; an
        // OnRootMismatch restart whose root is already right still needs no capability.
        let checked = check(root, job)?;
        if checked.skip.is_some() {
            return Ok(skipped(root, &checked, options, progress, started));
        }
        return Err(PrepareError::NoChownCapability {
            path: crate::display::path(root.path()).to_string(),
            uid: powers.uid,
        });
    }
    // Held to the end of the pass, the root's change included; a dry run writes nothing.
    let _lock = (!options.dry_run).then(|| lock_volume(root)).transpose()?;
    let checked = check(root, job)?;
    if checked.skip.is_some() {
        return Ok(skipped(root, &checked, options, progress, started));
    }
    let visitor = PassVisitor::new(&checked.job, options.dry_run)
        .with_listing(options.listing.clone())
        .with_powers(powers.clone());
    raise_descriptor_limit();
    let outcome = walk::walk(root, &options.walk, &visitor, progress, cancel).map_err(|err| {
        PrepareError::Threads {
            path: crate::display::path(root.path()).to_string(),
            err,
        }
    })?;
    if outcome == Outcome::Complete {
        change_root(root, &visitor, progress);
    }
    let mut report = Report::new(root, &checked.asked, options, progress, None, started);
    report.outcome = pass_outcome(outcome, progress);
    report.labels_unsupported = checked.labels_unsupported || visitor.met_unsupported_labels();
    report.not_permitted = NotPermitted::of(visitor.shortfalls());
    Ok(report)
}

/// What [`prepare`] would answer without walking, when the root alone decides: a refusal,
/// or a skip (OnRootMismatch with a matching root, or a relabel the filesystem cannot
/// hold). `Ok(None)` means a walk is needed. The agent answers skips with this without
/// waiting for a walker slot.
pub fn check_root(
    path: &Path,
    job: &Job,
    options: &Options,
) -> Result<Option<Report>, PrepareError> {
    let started = Instant::now();
    let root = Root::open(path)?;
    let progress = Progress::new(options.walk.max_errors);
    let checked = check(&root, job)?;
    Ok(checked
        .skip
        .is_some()
        .then(|| skipped(&root, &checked, options, &progress, started)))
}

/// A job checked against its root, before any walk.
struct Checked {
    /// The job as asked, its label spelled as the node spells it: what reports name.
    asked: Job,
    /// The job as it will run: without its label when the filesystem cannot store labels
    /// and the job allows that.
    job: Job,
    labels_unsupported: bool,
    /// Why no walk is needed, if none is.
    skip: Option<SkipReason>,
}

fn check(root: &Root, job: &Job) -> Result<Checked, PrepareError> {
    if job.ownership.is_none() && job.label.is_none() {
        return Err(PrepareError::NothingAsked);
    }
    if let Some(what) = selinux::refused_root(root.stat()) {
        return Err(PrepareError::RefusedRoot {
            path: crate::display::path(root.path()).to_string(),
            what,
        });
    }
    let mut job = job.clone();
    if let Some(label) = job.label.take() {
        job.label = Some(selinux::checked_label(label)?);
    }
    let asked = job.clone();
    let labels_unsupported = job.label.is_some() && !visitor::root_stores_labels(root);
    if labels_unsupported {
        if !job.ignore_unsupported_labels {
            return Err(PrepareError::LabelsUnsupported {
                path: crate::display::path(root.path()).to_string(),
            });
        }
        tracing::info!(path = %crate::display::path(root.path()), "filesystem cannot store SELinux labels; relabel not needed");
        job.label = None;
    }
    let skip = if job.ownership.is_none() && job.label.is_none() {
        Some(SkipReason::LabelsUnsupported)
    } else if job.change_policy == ChangePolicy::OnRootMismatch
        && PassVisitor::new(&job, false).root_matches(root)
    {
        Some(SkipReason::OnRootMismatch)
    } else {
        None
    };
    Ok(Checked {
        asked,
        job,
        labels_unsupported,
        skip,
    })
}

/// The report of a pass the root alone settled: the root was looked at, nothing changed.
fn skipped(
    root: &Root,
    checked: &Checked,
    options: &Options,
    progress: &Progress,
    started: Instant,
) -> Report {
    progress.visit();
    progress.record(walk::Visited::Unchanged);
    let mut report = Report::new(
        root,
        &checked.asked,
        options,
        progress,
        checked.skip,
        started,
    );
    report.labels_unsupported = checked.labels_unsupported;
    report
}

fn change_root(root: &Root, visitor: &PassVisitor, progress: &Progress) {
    progress.visit();
    let entry = walk::Entry::root(root);
    match visitor.visit(&entry) {
        Ok(visited) => progress.record(visited),
        Err(e) => progress.fail_root(Failure::new(root.path().to_path_buf(), e.op, &e.err)),
    }
}

fn pass_outcome(outcome: Outcome, progress: &Progress) -> PassOutcome {
    match outcome {
        Outcome::Cancelled => PassOutcome::Cancelled,
        Outcome::Failed => PassOutcome::Partial,
        Outcome::Complete if progress.tally().failed > 0 => PassOutcome::Partial,
        Outcome::Complete => PassOutcome::Complete,
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
