//! How the SELinux label reaches the volume: KEP-1710 as kubelet's volume manager applies it.
//!
//! kubelet mounts with `-o context=` only when SELinux is on, a gate allows it, the plugin
//! supports it, the volume is a PersistentVolume, the pod did not opt out, and every
//! container that mounts the volume asks for the same label; otherwise the container
//! runtime relabels recursively. This module finds the label, the first condition that
//! fails, and the conflicts worth a warning or a refusal.

use super::gates::Gate;
use super::identity::all_containers;
use super::inputs::{DecideError, Inputs, NodeFacts};
use super::model::SeLinuxPlan;
use super::volume::{Plugin, Resolved};
use crate::selinux as sel;
use crate::selinux::Context;
use k8s_openapi::api::core::v1::PodSecurityContext;
use k8s_openapi::api::storage::v1::CSIDriver;

/// One container's wish for the volume's label.
struct Wish {
    container: String,
    privileged: bool,
    label: Wanted,
}

enum Wanted {
    /// No seLinuxOptions at pod or container level: kubelet skips the container.
    Nothing,
    /// Options without a level: the runtime picks a random one at start.
    NoLevel,
    Label(Context),
}

fn sel_options(o: &k8s_openapi::api::core::v1::SELinuxOptions) -> sel::SeLinuxOptions {
    let s = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    sel::SeLinuxOptions {
        user: s(&o.user),
        role: s(&o.role),
        type_: s(&o.type_),
        level: s(&o.level),
    }
}

/// The label each container that mounts the volume asks for: its own seLinuxOptions, else
/// the pod's (kubelet's effective security context).
fn wishes(
    inputs: &Inputs,
    pod_sc: Option<&PodSecurityContext>,
    node: &NodeFacts,
) -> Result<Vec<Wish>, DecideError> {
    let mut out = Vec::new();
    for (kind, c) in all_containers(inputs.pod) {
        if !c
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == inputs.volume)
        {
            continue;
        }
        let sc = c.security_context.as_ref();
        let (opts, field) = match sc.and_then(|s| s.se_linux_options.as_ref()) {
            Some(o) => (
                Some(o),
                format!(
                    "spec.{}[{:?}].securityContext.seLinuxOptions",
                    kind.field(),
                    c.name
                ),
            ),
            None => (
                pod_sc.and_then(|p| p.se_linux_options.as_ref()),
                "spec.securityContext.seLinuxOptions".to_string(),
            ),
        };
        let label = match opts.map(sel_options) {
            None => Wanted::Nothing,
            Some(o) if o.level.is_none() => Wanted::NoLevel,
            Some(o) => Wanted::Label(sel::file_label(&o, &node.container_file_defaults).map_err(
                |e| {
                    DecideError::pod(format!(
                        "field {field}: {e}; expected a level such as s0:c123,c456"
                    ))
                },
            )?),
        };
        out.push(Wish {
            container: c.name.clone(),
            privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
            label,
        });
    }
    Ok(out)
}

/// The SELinux part of the plan: mount option, relabel, or nothing, with the reason.
pub(crate) fn selinux(
    inputs: &Inputs,
    pod_sc: Option<&PodSecurityContext>,
    vol: &Resolved,
    driver: Option<&CSIDriver>,
    node: &NodeFacts,
    warnings: &mut Vec<String>,
) -> Result<SeLinuxPlan, DecideError> {
    let name = &vol.info.name;
    se_linux_change_policy(pod_sc)?;
    if !node.selinux_enabled {
        return Ok(SeLinuxPlan::none(
            "SELinux is disabled on this node (no --selinux-enabled): no label is applied".into(),
        ));
    }
    let wishes = wishes(inputs, pod_sc, node)?;
    let blocked = mount_blocker(pod_sc, vol, driver, node)?;
    if !vol.plugin.relabels() && blocked.is_some() {
        return Ok(SeLinuxPlan::none(format!(
            "the {} plugin neither relabels nor mounts with -o context=: its files keep their labels",
            vol.plugin.name()
        )));
    }
    let label = match agreed_label(name, &wishes, blocked.is_none(), warnings)? {
        Agreement::Label(label) => label,
        Agreement::Nothing(plan) => return Ok(plan),
    };
    match blocked {
        None => {
            for w in wishes.iter().filter(|w| w.privileged) {
                warnings.push(format!(
                    "container {:?} is privileged: it runs as spc_t whatever its seLinuxOptions; while volume {name:?} is mounted with context=, pods with another label or privileged pods without one that share it on this node wait until it is unmounted (seLinuxChangePolicy: Recursive allows sharing)",
                    w.container
                ));
            }
            let option = sel::mount_option(&label);
            Ok(SeLinuxPlan::mount_option(
                label.clone(),
                option.clone(),
                format!(
                    "SELinux is enabled, {}, {}, and every container that mounts the volume asks for the same label: kubelet mounts it with {option}, so no file is relabeled",
                    mount_support(vol),
                    if node.gates.enabled(Gate::SELinuxMount) {
                        "SELinuxMount is on"
                    } else {
                        "the PersistentVolume's only access mode is ReadWriteOncePod"
                    }
                ),
            ))
        }
        // The runtimes never relabel for a privileged container (it runs as spc_t).
        Some(why) if wishes.iter().all(|w| w.privileged) => Ok(SeLinuxPlan::none(format!(
            "{why}, and every container that mounts volume {name:?} is privileged, for which the container runtime does not relabel"
        ))),
        Some(why) => Ok(SeLinuxPlan::relabel(
            label,
            format!("{why}, so the container runtime relabels every file of the volume (volsec does it in one pass)"),
        )),
    }
}

/// What the containers that mount the volume agree on.
enum Agreement {
    Label(Context),
    /// No label can be applied in advance; the plan says why.
    Nothing(SeLinuxPlan),
}

/// The one label the containers that mount the volume ask for, or why there is none. Two
/// labels are refused when the volume would be mounted with the label (kubelet's "multiple
/// SELinux labels found"), and only warned about otherwise.
fn agreed_label(
    name: &str,
    wishes: &[Wish],
    mounts_with_label: bool,
    warnings: &mut Vec<String>,
) -> Result<Agreement, DecideError> {
    if wishes.is_empty() {
        return Ok(Agreement::Nothing(SeLinuxPlan::none(format!(
            "no container mounts volume {name:?}: nothing is labeled"
        ))));
    }
    if let Some(w) = wishes.iter().find(|w| matches!(w.label, Wanted::NoLevel)) {
        return Ok(Agreement::Nothing(SeLinuxPlan::none(format!(
            "container {:?} has seLinuxOptions without a level: the container runtime picks a random MCS level when it starts the container and relabels the volume itself, so the label cannot be known in advance",
            w.container
        ))));
    }
    let labeled: Vec<(&str, &Context)> = wishes
        .iter()
        .filter_map(|w| match &w.label {
            Wanted::Label(l) => Some((w.container.as_str(), l)),
            _ => None,
        })
        .collect();
    let Some((_, label)) = labeled.first() else {
        return Ok(Agreement::Nothing(SeLinuxPlan::none(
            "neither the pod nor the containers that mount the volume set seLinuxOptions: the container runtime allocates a random MCS label when the pod starts and relabels the volume itself".into(),
        )));
    };
    let label = (*label).clone();
    let mut distinct: Vec<String> = labeled.iter().map(|(_, l)| l.to_string()).collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() > 1 {
        let who = labeled
            .iter()
            .map(|(c, l)| format!("{c} wants {l}"))
            .collect::<Vec<_>>()
            .join(", ");
        if mounts_with_label {
            return Err(DecideError::pod(format!(
                "multiple SELinux labels found for volume {name:?}: {who}; kubelet refuses to mount it with -o context=, so give its containers one seLinuxOptions.level or set spec.securityContext.seLinuxChangePolicy: Recursive"
            )));
        }
        warnings.push(format!(
            "containers ask for different SELinux labels for volume {name:?} ({who}): the runtime relabels it for each container as it starts, and only the last one can use it"
        ));
        return Ok(Agreement::Nothing(SeLinuxPlan::none(format!(
            "the containers that mount volume {name:?} ask for different labels: the runtime relabels it once per container and the last wins, so volsec applies none"
        ))));
    }
    for w in wishes.iter().filter(|w| matches!(w.label, Wanted::Nothing)) {
        warnings.push(format!(
            "container {:?} mounts volume {name:?} without seLinuxOptions: the runtime gives it a random MCS label, so it cannot use files labeled {label}",
            w.container
        ));
    }
    Ok(Agreement::Label(label))
}

/// The pod's `seLinuxChangePolicy`, checked.
fn se_linux_change_policy(
    pod_sc: Option<&PodSecurityContext>,
) -> Result<Option<&str>, DecideError> {
    match pod_sc.and_then(|s| s.se_linux_change_policy.as_deref()) {
        p @ (None | Some("MountOption") | Some("Recursive")) => Ok(p),
        Some(other) => Err(DecideError::pod(format!(
            "field spec.securityContext.seLinuxChangePolicy: {other:?} is not a policy; expected MountOption or Recursive"
        ))),
    }
}

/// Which plugin supports `-o context=`, in words, for a positive reason.
fn mount_support(vol: &Resolved) -> String {
    match &vol.plugin {
        Plugin::Csi { driver } => format!("CSIDriver {driver} sets seLinuxMount: true"),
        p => format!("the in-tree {} plugin supports -o context=", p.name()),
    }
}

/// The first of KEP-1710's conditions that keeps kubelet from mounting with the label, in
/// words; `None` when the volume gets `-o context=`.
fn mount_blocker(
    pod_sc: Option<&PodSecurityContext>,
    vol: &Resolved,
    driver: Option<&CSIDriver>,
    node: &NodeFacts,
) -> Result<Option<String>, DecideError> {
    let gates = &node.gates;
    if !gates.enabled(Gate::SELinuxMountReadWriteOncePod) {
        return Ok(Some(format!(
            "{}, so kubelet never mounts with -o context=",
            gates.describe(Gate::SELinuxMountReadWriteOncePod)
        )));
    }
    let plugin_mounts = match &vol.plugin {
        Plugin::Csi { .. } => driver.and_then(|d| d.spec.se_linux_mount) == Some(true),
        Plugin::Iscsi | Plugin::Fc => true,
        _ => false,
    };
    if !plugin_mounts {
        return Ok(Some(match (&vol.plugin, driver) {
            (Plugin::Csi { driver: d }, None) => format!("no CSIDriver given for {d}, and seLinuxMount defaults to false"),
            (Plugin::Csi { driver: d }, Some(_)) => format!("CSIDriver {d} does not set seLinuxMount: true"),
            (p, _) => format!("the {} plugin cannot mount with -o context= (only CSI drivers with seLinuxMount: true, iSCSI and Fibre Channel can)", p.name()),
        }));
    }
    let Some(pv) = vol.pv else {
        return Ok(Some("the volume is inline in the pod, and only PersistentVolumes are mounted with -o context=".into()));
    };
    let change = se_linux_change_policy(pod_sc)?;
    if change == Some("Recursive") && gates.enabled(Gate::SELinuxChangePolicy) {
        return Ok(Some("the pod sets seLinuxChangePolicy: Recursive".into()));
    }
    if gates.enabled(Gate::SELinuxMount) {
        return Ok(None);
    }
    let modes = pv
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    if modes != ["ReadWriteOncePod"] {
        return Ok(Some(format!(
            "the PersistentVolume's access modes [{}] are not exactly [ReadWriteOncePod] and {}",
            modes.join(", "),
            gates.describe(Gate::SELinuxMount)
        )));
    }
    Ok(None)
}
