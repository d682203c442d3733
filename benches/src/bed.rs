//! A test bed: one generated tree, the state it is in, and every pass the benchmarks time,
//! volsec's and the baselines', each bringing the tree to a state chosen by the scenario.
//!
//! "Every inode needs a change" must stay true on every iteration, or a benchmark quietly
//! measures a no-op from the second iteration on. So the bed remembers which group and
//! label the tree holds and each "all change" pass targets the *other* one of two groups
//! (and two labels): whatever implementation runs next, every inode really changes. The
//! "nothing to change" passes target the state the tree is already in.

use super::baseline::{self, BaselineCount};
use super::tree::{self, Counts, Spec};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use volsec_core::ownership::{ChangePolicy, Ownership};
use volsec_core::prepare::{self, Job, Options, Report};
use volsec_core::selinux::Context;
use volsec_core::walk::Progress;

/// The two groups the "all change" passes alternate between.
pub const GROUPS: [u32; 2] = [2001, 2002];
/// The two labels the "all change" relabels alternate between.
pub const LABELS: [&str; 2] = [
    "system_u:object_r:container_file_t:s0:c1,c2",
    "system_u:object_r:container_file_t:s0:c3,c4",
];

/// What a pass must do to the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The other group / label: every inode changes.
    Flip,
    /// The group / label the tree already has: nothing changes.
    Keep,
}

/// A generated tree and the group and label it currently holds.
pub struct Bed {
    pub path: PathBuf,
    pub spec: Spec,
    pub counts: Counts,
    gid: usize,
    label: usize,
}

impl Bed {
    /// Generates `spec` in a new directory `name` under `parent` and brings it to the first
    /// group and label.
    pub fn build(parent: &Path, name: &str, spec: Spec) -> io::Result<Bed> {
        let path = parent.join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir(&path)?;
        let counts = tree::generate(&path, spec, 0)?;
        tree::set_state(&path, GROUPS[0], Some(LABELS[0]), 0)?;
        Ok(Bed {
            path,
            spec,
            counts,
            gid: 0,
            label: 0,
        })
    }

    pub fn inodes(&self) -> u64 {
        self.counts.inodes()
    }

    /// The group a pass with `target` must set, and records it as the tree's state.
    pub fn gid(&mut self, target: Target) -> u32 {
        if target == Target::Flip {
            self.gid ^= 1;
        }
        GROUPS[self.gid]
    }

    /// The label a pass with `target` must set, and records it as the tree's state.
    pub fn label(&mut self, target: Target) -> &'static str {
        if target == Target::Flip {
            self.label ^= 1;
        }
        LABELS[self.label]
    }

    /// volsec's pass: fsGroup and/or label, in-process, through the library.
    pub fn volsec(
        &mut self,
        ownership: Option<Target>,
        label: Option<Target>,
        policy: ChangePolicy,
        threads: usize,
    ) -> io::Result<Report> {
        let job = self.job(ownership, label, policy);
        run_volsec(&self.path, &job, threads)
    }

    /// The job a volsec pass runs; also what `volsec apply` is given in a child process.
    pub fn job(
        &mut self,
        ownership: Option<Target>,
        label: Option<Target>,
        policy: ChangePolicy,
    ) -> Job {
        Job {
            ownership: ownership.map(|t| Ownership {
                fs_group: self.gid(t),
                read_only: false,
                owner: None,
            }),
            label: label.map(|t| Context::parse(self.label(t)).expect("a valid label")),
            change_policy: policy,
            ..Job::default()
        }
    }

    /// See [`settle`].
    pub fn settle(&self) -> io::Result<()> {
        settle(&self.path)
    }

    /// kubelet's serial path-based walk.
    pub fn kubelet(&mut self, target: Target, policy: ChangePolicy) -> io::Result<BaselineCount> {
        let ownership = Ownership {
            fs_group: self.gid(target),
            read_only: false,
            owner: None,
        };
        baseline::kubelet_ownership(&self.path, ownership, policy)
    }

    /// go-selinux's recursive relabel (fast mode by itself when the root already matches).
    pub fn go_selinux(&mut self, target: Target) -> io::Result<BaselineCount> {
        let label = self.label(target);
        baseline::go_selinux_relabel(&self.path, label, 0)
    }

    /// `chgrp -R` to the other group.
    pub fn chgrp(&mut self) -> io::Result<()> {
        let gid = self.gid(Target::Flip);
        baseline::chgrp_recursive(&self.path, gid)
    }

    /// rchm by `exe`, asked for kubelet's result with the group `target` gives (see
    /// [`baseline::rchm_args`]); the entries it changed, when its summary says.
    pub fn rchm(&mut self, exe: &Path, target: Target, adaptive: bool) -> io::Result<Option<u64>> {
        let gid = self.gid(target);
        baseline::rchm_ownership(exe, &self.path, gid, adaptive)
    }

    /// Brings the tree to its current group and label again (after a pass that only
    /// partly applies them, e.g. `chgrp -R` leaves modes alone).
    pub fn reset(&mut self) -> io::Result<()> {
        tree::set_state(&self.path, GROUPS[self.gid], Some(LABELS[self.label]), 0).map(|_| ())
    }
}

/// One volsec pass in this process; a pass that did not complete is an error (a benchmark
/// of a failing pass measures nothing).
pub fn run_volsec(path: &Path, job: &Job, threads: usize) -> io::Result<Report> {
    let mut options = Options::default();
    options.walk.threads = threads;
    let progress = Progress::new(10);
    let report = prepare::prepare(path, job, &options, &progress, &AtomicBool::new(false))
        .map_err(io::Error::other)?;
    if !report.succeeded() {
        return Err(io::Error::other(format!(
            "{}: the volsec pass failed on {} entries (first: {})",
            path.display(),
            report.tally.failed,
            report
                .errors
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        )));
    }
    Ok(report)
}

/// Writes back what earlier passes left dirty and commits the journal (`syncfs`), untimed,
/// before every timed pass, so that each pass starts from the same state whichever tool ran
/// before it, rather than paying for the checkpoints of the one before (or, run after a
/// faster tool, for more of them). On ext4 that leaves nothing for a checkpoint to write;
/// on xfs the log is forced but the written inodes stay in its active list until xfs
/// pushes them, so a pass may still push some of the one before.
pub fn settle(tree: &Path) -> io::Result<()> {
    let named =
        |e: io::Error, op: &str| io::Error::new(e.kind(), format!("{op} {}: {e}", tree.display()));
    let dir = std::fs::File::open(tree).map_err(|e| named(e, "open"))?;
    rustix::fs::syncfs(&dir).map_err(|e| named(e.into(), "syncfs"))
}
