//! What a pass did, for people (one screen) and for machines (JSON).

use super::{Job, Options};
use crate::ownership::Shortfall;
use crate::walk::{lossy, Failure, Progress, Root, Tally};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassOutcome {
    /// Everything was handled and the root changed last: the volume is prepared.
    Complete,
    /// Some entries failed; the root was left unchanged, so the next OnRootMismatch pass
    /// walks again.
    Partial,
    /// The pass was stopped before it finished; the root was left unchanged.
    Cancelled,
    /// The root alone settled it (see [`SkipReason`]); nothing below was looked at.
    Skipped,
}

impl PassOutcome {
    /// The name reports use: `complete`, `partial`, `cancelled`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            PassOutcome::Complete => "complete",
            PassOutcome::Partial => "partial",
            PassOutcome::Cancelled => "cancelled",
            PassOutcome::Skipped => "skipped",
        }
    }

    /// Whether the root was left as it was although a walk was needed.
    pub fn left_root_unchanged(self) -> bool {
        matches!(self, PassOutcome::Partial | PassOutcome::Cancelled)
    }
}

impl fmt::Display for PassOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no walk was needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SkipReason {
    /// fsGroupChangePolicy OnRootMismatch and the root already matches.
    OnRootMismatch,
    /// Only a relabel was asked, and the filesystem cannot store labels.
    LabelsUnsupported,
}

/// The reason as a sentence, for the summary and the agent's `skip_message`.
impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::OnRootMismatch => "OnRootMismatch: the root already has fsGroup, setgid and the permission bits (and the owner and the label, if asked), so nothing below was looked at",
            SkipReason::LabelsUnsupported => "the filesystem cannot store SELinux labels; relabel not needed",
        })
    }
}

/// Entries the process could not bring to kubelet's mode for lack of a capability: not
/// failures (their group and owner were changed, the pass goes on and the root is changed
/// last as usual), but said once, with their count, in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotPermitted {
    /// The capability that would have allowed it, e.g. `CAP_FOWNER`.
    pub capability: String,
    /// How many entries.
    pub entries: u64,
    /// What they lack: `mode` (the entry is not the process's own), `setgid` (dropped from
    /// a chmod into a group not the process's) or `setid_given_away` (setuid/setgid the
    /// chown of a file given away cleared).
    pub what: &'static str,
}

impl NotPermitted {
    /// The shortfalls a pass counted, one item per kind met.
    pub fn of(counted: [(Shortfall, u64); 3]) -> Vec<NotPermitted> {
        counted
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(kind, entries)| {
                let (capability, what) = match kind {
                    Shortfall::Mode => ("CAP_FOWNER", "mode"),
                    Shortfall::SetGid => ("CAP_FSETID", "setgid"),
                    Shortfall::GivenAway => ("CAP_FOWNER", "setid_given_away"),
                };
                NotPermitted {
                    capability: capability.to_string(),
                    entries,
                    what,
                }
            })
            .collect()
    }
}

impl fmt::Display for NotPermitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.entries;
        let (entries, their) = if n == 1 {
            ("entry", "its")
        } else {
            ("entries", "their")
        };
        let cap = &self.capability;
        match self.what {
            "mode" => write!(
                f,
                "{n} {entries} of other owners kept a mode without kubelet's bits: chmod of an entry this process does not own needs {cap}, which it lacks ({their} owner and group were changed)"
            ),
            "setgid" => write!(
                f,
                "{n} {entries} lost setgid: the kernel drops it from a chmod into a group the process is not in unless it has {cap}, which it lacks"
            ),
            _ => write!(
                f,
                "{n} {entries} given to another owner lost setuid/setgid, which the chown clears and only {cap} could put back, which this process lacks"
            ),
        }
    }
}

/// The result of one pass.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The volume's root; in JSON `path` and `path_bytes` (see [`lossy`]).
    #[serde(flatten, serialize_with = "lossy::path_with_bytes")]
    pub path: PathBuf,
    /// How the pass ended.
    pub outcome: PassOutcome,
    /// What the pass counted.
    #[serde(flatten)]
    pub tally: Tally,
    /// The failures with their paths (capped; `failed` counts all).
    pub errors: Vec<Failure>,
    /// The nested mount points that were left alone; in JSON `nested_mounts` and
    /// `nested_mounts_bytes` (see [`lossy`]).
    #[serde(flatten, serialize_with = "lossy::nested_mounts")]
    pub nested_mounts: Vec<PathBuf>,
    /// Non-directories with more than one name (`st_nlink > 1`): a hard link whose other
    /// names may lie outside the volume. Changed like any file, as kubelet does, so the
    /// other names see the change. `None` when the pass read no attributes (relabel only).
    pub hard_linked: Option<u64>,
    /// Block and character device nodes: changed like any file, as kubelet does (their group
    /// and mode, or label; never the device). `None` when the pass read no attributes.
    pub devices: Option<u64>,
    /// Why no walk was needed, when the pass was skipped.
    pub skipped_reason: Option<SkipReason>,
    /// The relabel was dropped because the filesystem cannot store labels.
    pub labels_unsupported: bool,
    /// What the process could not write for lack of a capability, one item per kind.
    pub not_permitted: Vec<NotPermitted>,
    /// The filesystem-wide error (read-only, I/O error, full, over quota) that stopped the
    /// pass at its first occurrence; the root was left unchanged.
    pub stopped: Option<Failure>,
    /// The fsGroup applied, if ownership was asked.
    pub fs_group: Option<u32>,
    /// The owner applied (`--owner`), if one was asked.
    pub owner: Option<u32>,
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
                PassOutcome::Skipped
            } else {
                PassOutcome::Complete
            },
            tally,
            errors: progress.errors(),
            nested_mounts: progress.skipped_mounts(),
            hard_linked: job.ownership.map(|_| progress.hard_linked()),
            devices: job.ownership.map(|_| progress.devices()),
            skipped_reason,
            labels_unsupported: false,
            not_permitted: Vec::new(),
            stopped: progress.stopped(),
            fs_group: job.ownership.map(|o| o.fs_group),
            owner: job.ownership.and_then(|o| o.owner),
            read_only: job.ownership.is_some_and(|o| o.read_only),
            selinux_label: job.label.as_ref().map(ToString::to_string),
            change_policy: job.change_policy.as_str(),
            dry_run: options.dry_run,
            threads: match progress.concurrency() {
                0 => options.walk.effective_threads(),
                n => n as usize,
            },
            elapsed_ms: elapsed.as_millis() as u64,
            inodes_per_second: (tally.visited as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
        }
    }

    /// Whether the volume is now fully prepared.
    pub fn succeeded(&self) -> bool {
        self.tally.failed == 0 && self.outcome != PassOutcome::Cancelled
    }

    /// The summary for people: what was asked, the counts, the failures, one screen. The
    /// one rendering of a pass, whether it ran here (`apply`, `relabel`) or in the agent
    /// (`volsec client prepare`).
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

/// A [`Report`] as text; see [`Report::summary`].
pub struct Summary<'a>(&'a Report);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let t = &r.tally;
        let owner = r
            .owner
            .map(|uid| format!("owner {uid}, "))
            .unwrap_or_default();
        let what = match (r.fs_group, &r.selinux_label) {
            (Some(g), Some(l)) => format!("fsGroup {g} and label {l}"),
            (Some(g), None) => format!("fsGroup {g}"),
            (None, Some(l)) => format!("label {l}"),
            (None, None) => String::new(),
        };
        let dry = if r.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        };
        writeln!(
            f,
            "{}: {owner}{what}, policy {}{dry}",
            crate::display::path(&r.path),
            r.change_policy
        )?;
        if let Some(reason) = r.skipped_reason {
            writeln!(f, "  skipped: {reason}")?;
        }
        let changed = if r.dry_run { "would change" } else { "changed" };
        let excluded = match t.excluded {
            0 => String::new(),
            n => format!(", {n} excluded"),
        };
        writeln!(
            f,
            "  {} visited, {} {changed}, {} unchanged, {} failed, {} vanished, {} mounts skipped{excluded}",
            t.visited, t.changed, t.unchanged, t.failed, t.vanished, t.skipped_mounts
        )?;
        writeln!(
            f,
            "  {:.3} s, {} inodes/s, threads: {}, outcome: {}",
            r.elapsed_ms as f64 / 1000.0,
            r.inodes_per_second,
            r.threads,
            r.outcome
        )?;
        let (links, devices) = (r.hard_linked.unwrap_or(0), r.devices.unwrap_or(0));
        if links > 0 || devices > 0 {
            writeln!(
                f,
                "  {links} hard-linked files, {devices} device nodes: treated as kubelet does, like any file"
            )?;
        }
        if r.labels_unsupported {
            writeln!(f, "  labels: {}", SkipReason::LabelsUnsupported)?;
        }
        for n in &r.not_permitted {
            writeln!(f, "  not permitted: {n}")?;
        }
        if let Some(stop) = &r.stopped {
            writeln!(f, "  stopped: {}", crate::walk::stop_sentence(stop))?;
        }
        for m in &r.nested_mounts {
            writeln!(
                f,
                "  nested mount skipped: {} (use --cross-mounts to enter)",
                crate::display::path(m)
            )?;
        }
        for e in &r.errors {
            writeln!(f, "  error: {e}")?;
        }
        if t.failed > r.errors.len() as u64 {
            writeln!(
                f,
                "  ... and {} more failures",
                t.failed - r.errors.len() as u64
            )?;
        }
        if t.failed > 0 || r.outcome == PassOutcome::Cancelled {
            writeln!(
                f,
                "  the root was left unchanged, so the next OnRootMismatch pass walks again"
            )?;
        }
        Ok(())
    }
}
