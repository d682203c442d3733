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
    #[serde(serialize_with = "lossy::path")]
    pub path: PathBuf,
    /// `complete`, `partial` (some entries failed; root left unchanged), `cancelled`, or
    /// `skipped`.
    pub outcome: &'static str,
    #[serde(flatten)]
    pub tally: Tally,
    /// The failures with their paths (capped; `failed` counts all).
    pub errors: Vec<Failure>,
    /// The nested mount points that were left alone.
    #[serde(serialize_with = "lossy::paths")]
    pub nested_mounts: Vec<PathBuf>,
    pub skipped_reason: Option<SkipReason>,
    /// The relabel was dropped because the filesystem cannot store labels.
    pub labels_unsupported: bool,
    pub fs_group: Option<u32>,
    pub read_only: bool,
    pub selinux_label: Option<String>,
    pub change_policy: &'static str,
    pub dry_run: bool,
    pub threads: usize,
    pub elapsed_ms: u64,
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
