//! What `volsec bench` measures: the scenarios, and who does each pass.
//!
//! A scenario names what it asks of every inode and which baselines it is measured
//! against. Both the harness (which runs them) and `compare` (which finds a row's main
//! baseline) read this, so it lives below both of them.

use super::bed::Target;
use volsec_core::ownership::ChangePolicy;

/// What a scenario asks of every inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// fsGroup changes: every inode needs a new group (two groups alternate).
    OwnershipAll,
    /// fsGroup already right everywhere, policy Always: nothing to write.
    OwnershipNone,
    /// fsGroupChangePolicy OnRootMismatch with a matching root: no walk at all.
    OnRootMismatch,
    /// Relabel where every label differs (two labels alternate).
    RelabelAll,
    /// Relabel where every label is already right.
    RelabelNone,
    /// fsGroup and label together, every inode differs in both.
    #[value(name = "fused-all")]
    Fused,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::OwnershipAll,
        Scenario::OwnershipNone,
        Scenario::OnRootMismatch,
        Scenario::RelabelAll,
        Scenario::RelabelNone,
        Scenario::Fused,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Scenario::OwnershipAll => "ownership-all",
            Scenario::OwnershipNone => "ownership-none",
            Scenario::OnRootMismatch => "on-root-mismatch",
            Scenario::RelabelAll => "relabel-all",
            Scenario::RelabelNone => "relabel-none",
            Scenario::Fused => "fused-all",
        }
    }

    /// The baselines this scenario is measured against, the main one first (`chgrp -R` and
    /// rchm only run when asked for: see [`crate::harness::Config::chgrp`] and
    /// [`crate::harness::Config::rchm`]).
    pub fn baselines(&self) -> &'static [Implementation] {
        use Implementation::*;
        match self {
            Scenario::OwnershipAll => &[KubeletSerial, ChgrpR, Rchm, RchmAdaptive],
            Scenario::OwnershipNone => &[KubeletSerial, Rchm, RchmAdaptive],
            Scenario::OnRootMismatch => &[KubeletSerial],
            Scenario::RelabelAll => &[GoSelinux],
            Scenario::RelabelNone => &[GoSelinuxFast],
            Scenario::Fused => &[KubeletThenGoSelinux],
        }
    }

    /// (ownership, label, policy) of the scenario's passes.
    pub(crate) fn targets(&self) -> (Option<Target>, Option<Target>, ChangePolicy) {
        use Target::*;
        match self {
            Scenario::OwnershipAll => (Some(Flip), None, ChangePolicy::Always),
            Scenario::OwnershipNone => (Some(Keep), None, ChangePolicy::Always),
            Scenario::OnRootMismatch => (Some(Keep), None, ChangePolicy::OnRootMismatch),
            Scenario::RelabelAll => (None, Some(Flip), ChangePolicy::Always),
            Scenario::RelabelNone => (None, Some(Keep), ChangePolicy::Always),
            Scenario::Fused => (Some(Flip), Some(Flip), ChangePolicy::Always),
        }
    }
}

/// Who does the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// volsec, in-process, with this many threads (0: one per CPU).
    Volsec(usize),
    /// kubelet's serial path-based walk (lstat + lchown + chmod on every entry).
    KubeletSerial,
    /// `chgrp -R`, as a command.
    ChgrpR,
    /// rchm (the rcp project's recursive chmod/chgrp/chown), as a command, asked for
    /// kubelet's group and modes, with its own defaults otherwise.
    Rchm,
    /// The same with rchm's adaptive metadata throttle and no cap on files in flight.
    RchmAdaptive,
    /// go-selinux's relabel: 1 walker, 2 x CPUs `lsetxattr` workers.
    GoSelinux,
    /// The same when the root already carries the label: read each entry, skip if equal.
    GoSelinuxFast,
    /// The two separate passes of today: kubelet's serial walk, then go-selinux's relabel.
    KubeletThenGoSelinux,
}

impl Implementation {
    pub fn name(&self) -> &'static str {
        match self {
            Implementation::Volsec(_) => "volsec",
            Implementation::KubeletSerial => "kubelet-serial",
            Implementation::ChgrpR => "chgrp-R",
            Implementation::Rchm => "rchm",
            Implementation::RchmAdaptive => "rchm-adaptive",
            Implementation::GoSelinux => "go-selinux",
            Implementation::GoSelinuxFast => "go-selinux-fast-mode",
            Implementation::KubeletThenGoSelinux => "kubelet-serial+go-selinux",
        }
    }

    /// The concurrency it runs with (rchm: its worker threads, one per CPU by default; its
    /// calls go through a pool of blocking threads of its own).
    pub(crate) fn threads(&self, cpus: usize) -> usize {
        match self {
            Implementation::Volsec(0) => cpus,
            Implementation::Volsec(n) => *n,
            Implementation::KubeletSerial | Implementation::ChgrpR => 1,
            Implementation::Rchm | Implementation::RchmAdaptive => cpus,
            _ => 2 * cpus,
        }
    }

    /// Whether it is an rchm pass, run only when asked for and found on `PATH`.
    pub fn is_rchm(&self) -> bool {
        matches!(self, Implementation::Rchm | Implementation::RchmAdaptive)
    }
}
