//! Who applies fsGroup: kubelet's CSI mounter (`supportsFSGroup`, the VOLUME_MOUNT_GROUP
//! delegation) and the in-tree plugins' ownership rules.
//!
//! The same pod and fsGroup give four different answers depending on the plugin, the
//! driver's capability, its CSIDriver's fsGroupPolicy, the volume's fsType, access modes
//! and read-only flag. Each answer is built here with the sentence that explains it.

use super::inputs::{DecideError, NodeFacts};
use super::model::{is_modeless, OwnershipPlan};
use super::volume::{Plugin, Resolved};
use crate::ownership::ChangePolicy;
use k8s_openapi::api::core::v1::PodSecurityContext;
use k8s_openapi::api::storage::v1::CSIDriver;

/// kubelet applies no fsGroup for a reason outside the plugin's rules: `none` without an
/// fsGroup, `unsupported` with one.
pub(crate) fn not_applied(pod_sc: Option<&PodSecurityContext>, why: String) -> OwnershipPlan {
    match pod_sc
        .and_then(|s| s.fs_group)
        .and_then(|g| crate::ownership::fs_group(g).ok())
    {
        Some(fs_group) => OwnershipPlan::unsupported(fs_group, why),
        None => OwnershipPlan::none(why),
    }
}

/// The fsGroup part of the plan for the resolved volume.
pub(crate) fn ownership(
    pod_sc: Option<&PodSecurityContext>,
    vol: &Resolved,
    driver: Option<&CSIDriver>,
    node: &NodeFacts,
    warnings: &mut Vec<String>,
) -> Result<OwnershipPlan, DecideError> {
    let Some(fs_group) = pod_sc.and_then(|s| s.fs_group) else {
        return Ok(OwnershipPlan::none(
            "the pod sets no spec.securityContext.fsGroup: kubelet leaves groups and modes alone"
                .into(),
        ));
    };
    let fs_group = crate::ownership::fs_group(fs_group)
        .map_err(|e| DecideError::pod(format!("field spec.securityContext.fsGroup: {e}")))?;
    let policy = change_policy(pod_sc)?;
    let read_only = vol.info.read_only;
    let plan = match &vol.plugin {
        Plugin::Csi { driver: name } => csi_ownership(fs_group, policy, vol, name, driver, node),
        Plugin::EmptyDir => OwnershipPlan::recursive(
            fs_group,
            ChangePolicy::Always,
            false,
            format!("emptyDir: kubelet gives it group {fs_group} on every mount, walking it whatever fsGroupChangePolicy says"),
        ),
        Plugin::AtomicWriter(kind) => OwnershipPlan::recursive(
            fs_group,
            ChangePolicy::Always,
            true,
            format!("{kind}: kubelet gives its files group {fs_group} with the read-only masks (0440, 02550) on every mount, whatever fsGroupChangePolicy says"),
        ),
        Plugin::Local | Plugin::Iscsi | Plugin::Fc if read_only => OwnershipPlan::unsupported(
            fs_group,
            format!("the volume is mounted read-only: the {} plugin applies no fsGroup to a read-only volume", vol.plugin.name()),
        ),
        Plugin::Local | Plugin::Iscsi | Plugin::Fc => OwnershipPlan::recursive(
            fs_group,
            policy,
            false,
            walk_reason(&format!("the {} plugin applies fsGroup", vol.plugin.name()), fs_group, policy),
        ),
        Plugin::HostPath | Plugin::Nfs => OwnershipPlan::unsupported(
            fs_group,
            format!("the {} plugin never changes ownership: fsGroup {fs_group} is not applied", vol.plugin.name()),
        ),
    };
    if plan.change_policy == Some(ChangePolicy::OnRootMismatch) && is_modeless(&vol.info.fs_type) {
        warnings.push(format!(
            "OnRootMismatch can never skip: fsType {} keeps no setgid bit on the root, so every mount walks the whole volume",
            vol.info.fs_type
        ));
    }
    Ok(plan)
}

fn change_policy(pod_sc: Option<&PodSecurityContext>) -> Result<ChangePolicy, DecideError> {
    match pod_sc.and_then(|s| s.fs_group_change_policy.as_deref()) {
        None => Ok(ChangePolicy::Always),
        Some(p) => p.parse().map_err(|_| {
            DecideError::pod(format!(
                "field spec.securityContext.fsGroupChangePolicy: {p:?} is not a policy; expected Always or OnRootMismatch"
            ))
        }),
    }
}

fn walk_reason(who: &str, fs_group: u32, policy: ChangePolicy) -> String {
    match policy {
        ChangePolicy::Always => format!(
            "{who}: every entry gets group {fs_group} and the fsGroup bits, on every mount (fsGroupChangePolicy Always)"
        ),
        ChangePolicy::OnRootMismatch => format!(
            "{who}: every entry gets group {fs_group} and the fsGroup bits, unless the root already has them (fsGroupChangePolicy OnRootMismatch; volsec plan --path DIR tests the root)"
        ),
    }
}

/// `supportsFSGroup` of kubelet's CSI mounter, after the VOLUME_MOUNT_GROUP delegation.
fn csi_ownership(
    fs_group: u32,
    policy: ChangePolicy,
    vol: &Resolved,
    name: &str,
    driver: Option<&CSIDriver>,
    node: &NodeFacts,
) -> OwnershipPlan {
    if node.volume_mount_group == Some(true) {
        return OwnershipPlan::delegate(
            fs_group,
            format!("driver {name} reports VOLUME_MOUNT_GROUP: kubelet passes volume_mount_group \"{fs_group}\" in NodeStageVolume and NodePublishVolume and changes no ownership itself, whatever fsGroupPolicy says"),
        );
    }
    let probe = match node.volume_mount_group {
        Some(_) => format!("driver {name} does not report VOLUME_MOUNT_GROUP"),
        None => format!("driver {name} was not asked for VOLUME_MOUNT_GROUP (no --csi-socket), so kubelet is assumed to apply fsGroup itself"),
    };
    let set = driver.and_then(|d| d.spec.fs_group_policy.as_deref());
    let policy_name = set.unwrap_or("ReadWriteOnceWithFSType");
    let from = match (driver, set) {
        (None, _) => {
            "no CSIDriver given, so the default fsGroupPolicy ReadWriteOnceWithFSType".to_string()
        }
        (Some(_), None) => {
            "the CSIDriver sets no fsGroupPolicy, so the default ReadWriteOnceWithFSType"
                .to_string()
        }
        (Some(_), Some(p)) => format!("the CSIDriver's fsGroupPolicy {p}"),
    };
    let ro = vol.info.read_only;
    let no = |why: String| {
        OwnershipPlan::unsupported(
            fs_group,
            format!("{probe}; {why}: fsGroup {fs_group} is not applied"),
        )
    };
    let yes = |why: String| {
        OwnershipPlan::recursive(
            fs_group,
            policy,
            ro,
            walk_reason(&format!("{probe}; {why}"), fs_group, policy),
        )
    };
    match policy_name {
        "None" => no(format!("{from} means kubelet never changes ownership")),
        _ if ro => no(format!(
            "the volume is mounted read-only, which {from} does not change"
        )),
        "File" => yes(format!(
            "{from} applies fsGroup whatever the fsType and access modes"
        )),
        _ if vol.info.fs_type.is_empty() => {
            no(format!("{from} needs an fsType and the volume has none"))
        }
        _ if vol.pv.is_none() => yes(format!(
            "{from} applies to an inline CSI volume, which is always mounted ReadWriteOnce"
        )),
        _ => {
            match &vol.info.access_modes {
                None => no(format!(
                    "{from} needs access modes and the PersistentVolume sets none"
                )),
                Some(modes) if modes.iter().any(|m| m == "ReadWriteOnce") => yes(format!(
                    "{from} applies to a ReadWriteOnce volume with fsType {}",
                    vol.info.fs_type
                )),
                Some(modes) if modes.iter().any(|m| m == "ReadWriteOncePod") => {
                    if node.gates.version.at_least(32) {
                        yes(format!("{from} applies to a ReadWriteOncePod volume with fsType {} (since 1.32)", vol.info.fs_type))
                    } else {
                        no(format!("{from} counts only ReadWriteOnce before 1.32, and the volume is ReadWriteOncePod on {}", node.gates.version))
                    }
                }
                Some(modes) => no(format!(
                    "{from} needs ReadWriteOnce or ReadWriteOncePod, and the access modes are [{}]",
                    modes.join(", ")
                )),
            }
        }
    }
}
