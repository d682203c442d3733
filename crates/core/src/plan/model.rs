//! The plan: kubelet's answer for one volume of one pod, typed, explained, serializable.
//!
//! Every branch carries a `reason` a person can read, and the values the executor needs
//! (`volume_mount_group`, `mount_option`, `label`, `change_policy`, `read_only`), so the
//! same value prints as text, serializes as the documented JSON, and becomes the
//! [`Job`](crate::prepare::Job) `volsec apply --pod` runs.

use super::gates::FeatureGates;
use super::identity::ContainerIdentity;
use super::volume::VolumeInfo;
use crate::ownership::{ChangePolicy, Ownership};
use crate::prepare::Job;
use crate::selinux::Context;
use crate::sys::Stat;
use serde::Serialize;

/// Who applies fsGroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnershipAction {
    /// The pod has no fsGroup.
    None,
    /// The CSI driver applies it (VOLUME_MOUNT_GROUP).
    Delegate,
    /// kubelet applies none (fsGroupPolicy None, read-only, no fsType, access modes, plugin).
    Unsupported,
    /// OnRootMismatch and the root already matches: nothing is walked.
    Skip,
    /// kubelet (here: volsec) walks the volume.
    Recursive,
}

/// The fsGroup part of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnershipPlan {
    /// Who applies fsGroup.
    pub action: OwnershipAction,
    /// Why, in one sentence naming the fields that decided it.
    pub reason: String,
    /// The pod's fsGroup, when it has one.
    pub fs_group: Option<u32>,
    /// `delegate`: the decimal string passed in `VolumeCapability.MountVolume.volume_mount_group`.
    pub volume_mount_group: Option<String>,
    /// `recursive` / `skip`: the fsGroupChangePolicy that applies.
    pub change_policy: Option<ChangePolicy>,
    /// `recursive` / `skip`: the read-only masks (0440, 02550) apply.
    pub read_only: bool,
}

/// How the SELinux label is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeLinuxAction {
    /// Nothing to apply in advance (SELinux off, no label known, plugin without labels...).
    None,
    /// kubelet mounts with `-o context="<label>"`; no file is relabeled.
    MountOption,
    /// The container runtime relabels every file (volsec does it in one pass).
    Relabel,
}

/// The SELinux part of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeLinuxPlan {
    /// How the label is applied.
    pub action: SeLinuxAction,
    /// Why, in one sentence naming the fields that decided it.
    pub reason: String,
    /// `mount_option` / `relabel`: the file label, canonical.
    pub label: Option<String>,
    /// `mount_option`: the option exactly as kubelet passes it, `context="..."`.
    pub mount_option: Option<String>,
    #[serde(skip)]
    pub(crate) context: Option<Context>,
}

/// kubelet's decisions for one volume of one pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// The volume, and what it leads to (plugin, driver, claim, PersistentVolume).
    pub volume: VolumeInfo,
    /// The Kubernetes version the decision followed, e.g. `1.33`.
    pub kubernetes_version: String,
    /// The gates the decision used, defaults included.
    pub feature_gates: std::collections::BTreeMap<&'static str, bool>,
    /// Whether SELinux is enabled on the node.
    pub selinux_enabled: bool,
    /// What the CSI driver reported: `true`/`false`, `null` when not asked (no socket).
    pub csi_volume_mount_group: Option<bool>,
    /// The fsGroup decision.
    pub ownership: OwnershipPlan,
    /// The SELinux label decision.
    pub selinux: SeLinuxPlan,
    /// The identity each container runs with, from securityContext and the image's accounts.
    pub containers: Vec<ContainerIdentity>,
    /// Things the pod will meet that are not errors, e.g. an OnRootMismatch that can never skip.
    pub warnings: Vec<String>,
}

/// File systems that keep no Unix modes, so the setgid bit never sticks on the root.
const MODELESS_FS: &[&str] = &["vfat", "msdos", "fat", "exfat", "ntfs", "ntfs3"];

impl OwnershipPlan {
    pub(crate) fn none(reason: String) -> OwnershipPlan {
        OwnershipPlan {
            action: OwnershipAction::None,
            reason,
            fs_group: None,
            volume_mount_group: None,
            change_policy: None,
            read_only: false,
        }
    }

    pub(crate) fn unsupported(fs_group: u32, reason: String) -> OwnershipPlan {
        OwnershipPlan {
            action: OwnershipAction::Unsupported,
            fs_group: Some(fs_group),
            ..OwnershipPlan::none(reason)
        }
    }

    pub(crate) fn delegate(fs_group: u32, reason: String) -> OwnershipPlan {
        OwnershipPlan {
            action: OwnershipAction::Delegate,
            fs_group: Some(fs_group),
            volume_mount_group: Some(fs_group.to_string()),
            ..OwnershipPlan::none(reason)
        }
    }

    pub(crate) fn recursive(
        fs_group: u32,
        change_policy: ChangePolicy,
        read_only: bool,
        reason: String,
    ) -> OwnershipPlan {
        OwnershipPlan {
            action: OwnershipAction::Recursive,
            reason,
            fs_group: Some(fs_group),
            volume_mount_group: None,
            change_policy: Some(change_policy),
            read_only,
        }
    }

    /// The ownership to apply, for `recursive` (and `skip`, which has nothing left to do
    /// but still names it).
    pub fn ownership(&self) -> Option<Ownership> {
        match self.action {
            OwnershipAction::Recursive | OwnershipAction::Skip => Some(Ownership {
                fs_group: self.fs_group?,
                read_only: self.read_only,
                owner: None,
            }),
            _ => None,
        }
    }
}

impl SeLinuxPlan {
    pub(crate) fn none(reason: String) -> SeLinuxPlan {
        SeLinuxPlan {
            action: SeLinuxAction::None,
            reason,
            label: None,
            mount_option: None,
            context: None,
        }
    }

    pub(crate) fn mount_option(label: Context, option: String, reason: String) -> SeLinuxPlan {
        SeLinuxPlan {
            action: SeLinuxAction::MountOption,
            reason,
            label: Some(label.to_string()),
            mount_option: Some(option),
            context: Some(label),
        }
    }

    pub(crate) fn relabel(label: Context, reason: String) -> SeLinuxPlan {
        SeLinuxPlan {
            action: SeLinuxAction::Relabel,
            reason,
            label: Some(label.to_string()),
            mount_option: None,
            context: Some(label),
        }
    }
}

impl Plan {
    /// Applies what only the volume's root can tell (`volsec plan --path`): with
    /// OnRootMismatch, a root that passes kubelet's test turns `recursive` into `skip`; a
    /// root that has the group and the bits but lost setgid means something clears it at
    /// every mount, so OnRootMismatch can never skip. The one place this rule lives.
    pub fn with_root(mut self, root: &Stat, path: &std::path::Path) -> Plan {
        let o = &mut self.ownership;
        let Some(ownership) = o.ownership() else {
            return self;
        };
        if o.action != OwnershipAction::Recursive
            || o.change_policy != Some(ChangePolicy::OnRootMismatch)
        {
            return self;
        }
        if ownership.root_matches(root) {
            o.action = OwnershipAction::Skip;
            o.reason = format!(
                "fsGroupChangePolicy OnRootMismatch and the root {} already has group {}, setgid and the permission bits: kubelet skips the walk",
                path.display(),
                ownership.fs_group
            );
        } else if root_lost_setgid(&ownership, root) {
            self.warnings.push(format!(
                "OnRootMismatch can never skip on {}: its root has group {} and the permission bits but no setgid, so something (the CSI driver at mount time, or a file system that drops the bit) clears setgid and every mount walks the whole volume",
                path.display(),
                ownership.fs_group
            ));
        }
        self
    }

    /// The pass `volsec apply --pod` runs; `None` when there is nothing for volsec to do
    /// (the reasons say why).
    pub fn job(&self) -> Option<Job> {
        let ownership = match self.ownership.action {
            OwnershipAction::Recursive => self.ownership.ownership(),
            _ => None,
        };
        let label = match self.selinux.action {
            SeLinuxAction::Relabel => self.selinux.context.clone(),
            _ => None,
        };
        if ownership.is_none() && label.is_none() {
            return None;
        }
        Some(Job {
            ownership,
            label,
            change_policy: self.ownership.change_policy.unwrap_or_default(),
            // The runtimes treat a file system without labels as "relabel not needed".
            ignore_unsupported_labels: true,
        })
    }

    pub(crate) fn set_gates(&mut self, gates: &FeatureGates) {
        self.kubernetes_version = gates.version.to_string();
        self.feature_gates = gates.values.clone();
    }
}

/// The root has everything OnRootMismatch asks but setgid.
fn root_lost_setgid(ownership: &Ownership, root: &Stat) -> bool {
    let with_setgid = Stat {
        perm: root.perm | libc::S_ISGID,
        ..*root
    };
    !ownership.root_matches(root) && ownership.root_matches(&with_setgid)
}

/// A file system type that cannot keep the setgid bit.
pub(crate) fn is_modeless(fs_type: &str) -> bool {
    MODELESS_FS.contains(&fs_type.to_ascii_lowercase().as_str())
}
