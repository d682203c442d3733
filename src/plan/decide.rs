//! The decision engine: a pure function from manifests and node facts to a [`Plan`].
//!
//! kubelet spreads this decision over the CSI mounter (`supportsFSGroup`, the
//! VOLUME_MOUNT_GROUP delegation), the volume ownership code, the SELinux label helpers and
//! the volume manager's desired state (KEP-1710). Here it is one function with no I/O: the
//! CSI probe, the node's SELinux state and defaults, and the image's accounts are facts
//! passed in, so every rule can be tested from manifests alone and explained in words.

use super::gates::{FeatureGates, Gate};
use super::identity::{self, ContainerIdentity, ContainerKind, IdentityInputs, ImageAccounts};
use super::model::{is_modeless, OwnershipPlan, Plan, SeLinuxPlan};
use super::volume::{self, Plugin, Resolved};
use crate::ownership::ChangePolicy;
use crate::selinux as sel;
use crate::selinux::Context;
use k8s_openapi::api::core::v1::{Container, PersistentVolume, Pod, PodSecurityContext};
use k8s_openapi::api::storage::v1::CSIDriver;

/// The manifests: the pod, the volume's name, and what the volume leads to.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub volume: &'a str,
    /// The PersistentVolume bound to the volume's claim (`--pv`).
    pub pv: Option<&'a PersistentVolume>,
    /// The CSIDriver object of the volume's driver (`--csidriver`); none means defaults.
    pub csi_driver: Option<&'a CSIDriver>,
}

/// What volsec knows about the node.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub selinux_enabled: bool,
    pub gates: FeatureGates,
    /// The CSI driver's answer to NodeGetCapabilities: whether it has VOLUME_MOUNT_GROUP;
    /// `None` when it was not asked.
    pub volume_mount_group: Option<bool>,
    /// The node's container file label defaults (user, role, type, level).
    pub container_file_defaults: Context,
    /// The image's /etc/passwd and /etc/group, for supplementalGroupsPolicy Merge.
    pub image: Option<ImageAccounts>,
}

/// Which input a refusal is about, so the caller can name the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Pod,
    PersistentVolume,
    CsiDriver,
}

/// Inputs kubelet would refuse, or volsec cannot model: one sentence naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecideError {
    pub input: Input,
    pub message: String,
}

impl DecideError {
    pub(crate) fn pod(message: String) -> DecideError {
        DecideError {
            input: Input::Pod,
            message,
        }
    }
    pub(crate) fn pv(message: String) -> DecideError {
        DecideError {
            input: Input::PersistentVolume,
            message,
        }
    }
    fn driver(message: String) -> DecideError {
        DecideError {
            input: Input::CsiDriver,
            message,
        }
    }
}

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
    let ownership = ownership(pod_sc, &vol, driver, node, &mut warnings)?;
    let selinux = selinux(
        inputs,
        pod_sc,
        &vol,
        driver,
        node,
        &containers,
        &mut warnings,
    )?;
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
    Ok(Some(d))
}

/// Every container of the pod (init, regular, ephemeral), as kubelet visits them.
fn all_containers(pod: &Pod) -> Vec<(ContainerKind, Container)> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let mut out: Vec<(ContainerKind, Container)> = Vec::new();
    out.extend(
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| (ContainerKind::Init, c.clone())),
    );
    out.extend(
        spec.containers
            .iter()
            .map(|c| (ContainerKind::Container, c.clone())),
    );
    for e in spec.ephemeral_containers.iter().flatten() {
        // An ephemeral container has the fields kubelet reads here under the same names.
        let c = Container {
            name: e.name.clone(),
            security_context: e.security_context.clone(),
            volume_mounts: e.volume_mounts.clone(),
            ..Default::default()
        };
        out.push((ContainerKind::Ephemeral, c));
    }
    out
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

// ---------------------------------------------------------------------------------------
// fsGroup

fn ownership(
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
    let fs_group = u32::try_from(fs_group).map_err(|_| {
        DecideError::pod(format!(
            "field spec.securityContext.fsGroup: {fs_group} is not a group id; expected 0 to 4294967295"
        ))
    })?;
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

// ---------------------------------------------------------------------------------------
// SELinux

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
                    "the securityContext.seLinuxOptions of {kind:?} container {:?}",
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

fn selinux(
    inputs: &Inputs,
    pod_sc: Option<&PodSecurityContext>,
    vol: &Resolved,
    driver: Option<&CSIDriver>,
    node: &NodeFacts,
    _containers: &[ContainerIdentity],
    warnings: &mut Vec<String>,
) -> Result<SeLinuxPlan, DecideError> {
    let name = &vol.info.name;
    let wishes = wishes(inputs, pod_sc, node)?;
    if !node.selinux_enabled {
        return Ok(SeLinuxPlan::none(
            "SELinux is disabled on this node (no --selinux-enabled): no label is applied".into(),
        ));
    }
    let blocked = mount_blocker(pod_sc, vol, driver, node)?;
    if !vol.plugin.relabels() && blocked.is_some() {
        return Ok(SeLinuxPlan::none(format!(
            "the {} plugin neither relabels nor mounts with -o context=: its files keep their labels",
            vol.plugin.name()
        )));
    }
    if wishes.is_empty() {
        return Ok(SeLinuxPlan::none(format!(
            "no container mounts volume {name:?}: nothing is labeled"
        )));
    }
    if let Some(w) = wishes.iter().find(|w| matches!(w.label, Wanted::NoLevel)) {
        return Ok(SeLinuxPlan::none(format!(
            "container {:?} has seLinuxOptions without a level: the container runtime picks a random MCS level when it starts the container and relabels the volume itself, so the label cannot be known in advance",
            w.container
        )));
    }
    let labeled: Vec<(&str, &Context)> = wishes
        .iter()
        .filter_map(|w| match &w.label {
            Wanted::Label(l) => Some((w.container.as_str(), l)),
            _ => None,
        })
        .collect();
    let Some((_, label)) = labeled.first() else {
        return Ok(SeLinuxPlan::none(
            "neither the pod nor the containers that mount the volume set seLinuxOptions: the container runtime allocates a random MCS label when the pod starts and relabels the volume itself".into(),
        ));
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
        if blocked.is_none() {
            return Err(DecideError::pod(format!(
                "multiple SELinux labels found for volume {name:?}: {who}; kubelet refuses to mount it with -o context=, so give its containers one seLinuxOptions.level or set spec.securityContext.seLinuxChangePolicy: Recursive"
            )));
        }
        warnings.push(format!(
            "containers ask for different SELinux labels for volume {name:?} ({who}): the runtime relabels it for each container as it starts, and only the last one can use it"
        ));
        return Ok(SeLinuxPlan::none(format!(
            "the containers that mount volume {name:?} ask for different labels: the runtime relabels it once per container and the last wins, so volsec applies none"
        )));
    }
    for w in wishes.iter().filter(|w| matches!(w.label, Wanted::Nothing)) {
        warnings.push(format!(
            "container {:?} mounts volume {name:?} without seLinuxOptions: the runtime gives it a random MCS label, so it cannot use files labeled {label}",
            w.container
        ));
    }
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
        Some(why) => Ok(SeLinuxPlan::relabel(
            label,
            format!("{why}, so the container runtime relabels every file of the volume (volsec does it in one pass)"),
        )),
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
    let change = pod_sc.and_then(|s| s.se_linux_change_policy.as_deref());
    match change {
        None | Some("MountOption") | Some("Recursive") => {}
        Some(other) => {
            return Err(DecideError::pod(format!(
                "field spec.securityContext.seLinuxChangePolicy: {other:?} is not a policy; expected MountOption or Recursive"
            )))
        }
    }
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
