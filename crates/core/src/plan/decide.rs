//! The decision engine: a pure function from manifests and node facts to a [`Plan`].
//! The fsGroup rules live in `fs_group`, the SELinux rules in `labels`.
//!
//! kubelet spreads this decision over the CSI mounter (`supportsFSGroup`, the
//! VOLUME_MOUNT_GROUP delegation), the volume ownership code, the SELinux label helpers and
//! the volume manager's desired state (KEP-1710). Here it is one function with no I/O: the
//! CSI probe, the node's SELinux state and defaults, and the image's accounts are facts
//! passed in, so every rule can be tested from manifests alone and explained in words.

use super::gates::Gate;
use super::identity::{self, all_containers, ContainerIdentity, IdentityInputs};
use super::inputs::{DecideError, Inputs, NodeFacts};
use super::model::{Plan, SeLinuxPlan};
use super::volume::{self, Plugin, Resolved};
use super::{fs_group, labels};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::storage::v1::CSIDriver;

/// kubelet's decisions for `inputs.volume` of `inputs.pod` on a node described by `node`.
pub fn decide(inputs: &Inputs, node: &NodeFacts) -> Result<Plan, DecideError> {
    let vol = volume::resolve(inputs.pod, inputs.volume, inputs.pv)?;
    let driver = csi_driver(inputs, &vol)?;
    let pod_sc = inputs
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref());
    let containers = identities(inputs.pod, inputs.volume, node);
    let mut warnings = Vec::new();
    let (ownership, selinux) = match usage(inputs.pod, inputs.volume) {
        Usage::Mounted => (
            fs_group::ownership(pod_sc, &vol, driver, node, &mut warnings)?,
            labels::selinux(inputs, pod_sc, &vol, driver, node, &mut warnings)?,
        ),
        Usage::BlockDevice => {
            let why = format!("volume {:?} is used only as a raw block device (volumeDevices): there is no file system to give a group or a label", inputs.volume);
            (
                fs_group::not_applied(pod_sc, why.clone()),
                SeLinuxPlan::none(why),
            )
        }
        Usage::Unused => {
            let why = format!(
                "no container of the pod uses volume {:?}, so kubelet does not set it up",
                inputs.volume
            );
            (
                fs_group::not_applied(pod_sc, why.clone()),
                SeLinuxPlan::none(why),
            )
        }
    };
    let mut plan = Plan {
        pod: pod_name(inputs.pod),
        volume: vol.info,
        kubernetes_version: String::new(),
        feature_gates: Default::default(),
        selinux_enabled: node.selinux_enabled,
        csi_volume_mount_group: node.volume_mount_group,
        ownership,
        selinux,
        containers,
        warnings,
    };
    plan.set_gates(&node.gates);
    Ok(plan)
}

/// How the pod's containers use a volume; kubelet sets up only the volumes they use.
enum Usage {
    Mounted,
    BlockDevice,
    Unused,
}

fn usage(pod: &Pod, volume: &str) -> Usage {
    let containers = all_containers(pod);
    let mounted = containers
        .iter()
        .any(|(_, c)| c.volume_mounts.iter().flatten().any(|m| m.name == volume));
    let device = containers
        .iter()
        .any(|(_, c)| c.volume_devices.iter().flatten().any(|d| d.name == volume));
    match (mounted, device) {
        (true, _) => Usage::Mounted,
        (false, true) => Usage::BlockDevice,
        (false, false) => Usage::Unused,
    }
}

fn pod_name(pod: &Pod) -> String {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    format!("{ns}/{}", pod.metadata.name.as_deref().unwrap_or(""))
}

/// The CSIDriver object, checked against the volume's driver.
fn csi_driver<'a>(
    inputs: &Inputs<'a>,
    vol: &Resolved,
) -> Result<Option<&'a CSIDriver>, DecideError> {
    let (Some(d), Plugin::Csi { driver }) = (inputs.csi_driver, &vol.plugin) else {
        return Ok(None);
    };
    let name = d.metadata.name.as_deref().unwrap_or("");
    if name != driver {
        return Err(DecideError::driver(format!(
            "field metadata.name: the CSIDriver is {name:?}, but volume {:?} uses driver {driver:?}",
            vol.info.name
        )));
    }
    match d.spec.fs_group_policy.as_deref() {
        None | Some("File" | "None" | "ReadWriteOnceWithFSType") => Ok(Some(d)),
        Some(other) => Err(DecideError::driver(format!(
            "field spec.fsGroupPolicy: {other:?} is not a policy; expected File, None or ReadWriteOnceWithFSType"
        ))),
    }
}

/// The identity of every container of `pod` (init, regular, ephemeral), and whether it
/// mounts `volume`.
pub fn identities(pod: &Pod, volume: &str, node: &NodeFacts) -> Vec<ContainerIdentity> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    all_containers(pod)
        .iter()
        .map(|(kind, c)| {
            identity::identity(&IdentityInputs {
                container: c,
                kind: *kind,
                pod: pod_sc,
                volume,
                strict_allowed: node.gates.enabled(Gate::SupplementalGroupsPolicy),
                image: node.image.as_ref(),
            })
        })
        .collect()
}
