//! What a pass did, for people (one screen) and for machines (JSON).

use super::{Job, Options};
use crate::walk::{lossy, Failure, Progress, Root, Tally};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Why no walk was needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SkipReason {
    /// fsGroupChangePolicy OnRootMismatch and the root already matches.
    OnRootMismatch,
    /// Only a relabel was asked, and the filesystem cannot store labels.
    LabelsUnsupported,
}

/// The result of one pass.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The volume's root.
    #[serde(serialize_with = "lossy::path")]
    pub path: PathBuf,
    /// `complete`, `partial` (some entries failed; root left unchanged), `cancelled`, or
    /// `skipped`.
    pub outcome: &'static str,
    /// What the pass counted.
    #[serde(flatten)]
    pub tally: Tally,
    /// The failures with their paths (capped; `failed` counts all).
    pub errors: Vec<Failure>,
    /// The nested mount points that were left alone.
    #[serde(serialize_with = "lossy::paths")]
    pub nested_mounts: Vec<PathBuf>,
    /// Why no walk was needed, when the pass was skipped.
    pub skipped_reason: Option<SkipReason>,
    /// The relabel was dropped because the filesystem cannot store labels.
    pub labels_unsupported: bool,
    /// The fsGroup applied, if ownership was asked.
    pub fs_group: Option<u32>,
    /// The read-only masks (0440, 02550) were used.
    pub read_only: bool,
    /// The SELinux label applied, as the node spells it, if a relabel was asked.
    pub selinux_label: Option<String>,
    /// `Always` or `OnRootMismatch`: the fsGroupChangePolicy that applied.
    pub change_policy: &'static str,
    /// Nothing was written: the counts say what would have changed.
    pub dry_run: bool,
    /// The worker threads the walk used.
    pub threads: usize,
    /// How long the pass took.
    pub elapsed_ms: u64,
    /// Entries examined per second: `visited` over the elapsed time.
    pub inodes_per_second: u64,
}

impl Report {
    pub(super) fn new(
        root: &Root,
        job: &Job,
        options: &Options,
        progress: &Progress,
        skipped_reason: Option<SkipReason>,
        started: Instant,
    ) -> Report {
        let elapsed = started.elapsed();
        let tally = progress.tally();
        Report {
            path: root.path().to_path_buf(),
            outcome: if skipped_reason.is_some() {
                "skipped"
            } else {
                "complete"
            },
            tally,
            errors: progress.errors(),
            nested_mounts: progress.skipped_mounts(),
            skipped_reason,
            labels_unsupported: false,
            fs_group: job.ownership.map(|o| o.fs_group),
            read_only: job.ownership.is_some_and(|o| o.read_only),
            selinux_label: job.label.as_ref().map(ToString::to_string),
            change_policy: job.change_policy.as_str(),
            dry_run: options.dry_run,
            threads: options.walk.effective_threads(),
            elapsed_ms: elapsed.as_millis() as u64,
            inodes_per_second: (tally.visited as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
        }
    }

    /// Whether the volume is now fully prepared.
    pub fn succeeded(&self) -> bool {
        self.tally.failed == 0 && self.outcome != "cancelled"
    }
}
