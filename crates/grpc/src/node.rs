//! The node facts a plan is decided from, gathered once for `volsec plan` and the agent's
//! `Plan` RPC: the release and its feature gates, the SELinux defaults, and the CSI
//! driver's VOLUME_MOUNT_GROUP.
//!
//! The decision itself is [`volsec_core::plan::decide`], a pure function; the facts are
//! what it is not allowed to look up. Two front ends asking for the same plan must get the
//! same answer, so the rules for asking live here, once:
//! - only a CSI volume's driver is asked, and only once the manifests are known good (the
//!   first decision says which driver the volume uses);
//! - the socket must belong to that driver: a socket whose `Identity/GetPluginInfo` names
//!   another driver is refused, since its answer says nothing about this volume.

use crate::csi::probe::{self, Capabilities, ProbeError};
use std::path::PathBuf;
use std::time::Duration;
use volsec_core::plan::gates::{FeatureGates, GateError, GateOverrides, KubeVersion};
use volsec_core::plan::{self, DecideError, Inputs, NodeFacts, Plan};
use volsec_core::selinux::{Context, ParseContextError};

/// What the caller says about the node, before anything is checked or looked up.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    /// The node's Kubernetes release (`1.33`, `v1.33.2`); `None` means the newest known.
    pub kubernetes_version: Option<String>,
    /// kubelet's `--feature-gates` on the node; the release's defaults for the others.
    pub feature_gates: GateOverrides,
    /// Whether SELinux is enabled on the node.
    pub selinux_enabled: bool,
    /// The container file label defaults (`user:role:type:level`); `None` reads the node's.
    pub selinux_defaults: Option<String>,
    /// Where VOLUME_MOUNT_GROUP comes from.
    pub csi: Csi,
}

/// Where the CSI driver's VOLUME_MOUNT_GROUP comes from.
#[derive(Debug, Clone, Default)]
pub enum Csi {
    /// Nobody is asked: the plan says `null`, and the driver is taken not to have it.
    #[default]
    NotAsked,
    /// The caller already knows the answer.
    Known(bool),
    /// Ask the driver on this socket, for a CSI volume of that driver only.
    Socket {
        /// The driver's Unix socket, e.g. `/var/lib/kubelet/plugins/<driver>/csi.sock`.
        path: PathBuf,
        /// How long to wait for its answer.
        timeout: Duration,
    },
}

/// Why no plan was made. Each message is one sentence; each front end names the input it
/// is about its own way (`--selinux-defaults`, `node.selinux_defaults`).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The release is not one volsec knows.
    #[error(transparent)]
    Version(GateError),
    /// A feature gate is malformed, unknown, not in the release yet, or locked.
    #[error(transparent)]
    Gates(GateError),
    /// The SELinux defaults given are not a context.
    #[error("{0}; expected user:role:type:level")]
    SelinuxDefaults(ParseContextError),
    /// The manifests are refused; [`DecideError::input`] names which one.
    #[error(transparent)]
    Decide(DecideError),
    /// The CSI driver could not be asked.
    #[error(transparent)]
    Probe(ProbeError),
    /// The socket belongs to another driver than the volume's.
    #[error("{}: the socket belongs to driver {driver:?} (Identity/GetPluginInfo), but volume {volume:?} uses driver {volume_driver:?}", socket.display())]
    OtherDriver {
        /// The socket that was asked.
        socket: PathBuf,
        /// The driver that answered on it.
        driver: String,
        /// The volume's name in the pod.
        volume: String,
        /// The driver the volume uses.
        volume_driver: String,
    },
}

impl NodeSpec {
    /// The release, its gates and the SELinux defaults, checked; no CSI answer yet (that
    /// needs the first decision, see [`decide`]). Reads the node's contexts file when no
    /// defaults are given, so it blocks.
    pub fn facts(&self) -> Result<NodeFacts, NodeError> {
        let version = match &self.kubernetes_version {
            Some(v) => KubeVersion::parse(v).map_err(NodeError::Version)?,
            None => KubeVersion::NEWEST,
        };
        let gates = FeatureGates::with(version, &self.feature_gates).map_err(NodeError::Gates)?;
        let container_file_defaults = match &self.selinux_defaults {
            Some(c) => Context::parse(c).map_err(NodeError::SelinuxDefaults)?,
            None => volsec_core::selinux::container_file_defaults(),
        };
        Ok(NodeFacts {
            selinux_enabled: self.selinux_enabled,
            gates,
            volume_mount_group: None,
            container_file_defaults,
            image: None,
        })
    }
}

/// Decides the plan, asking the CSI driver on `csi`'s socket when the volume is a CSI
/// volume of that driver.
pub async fn decide(inputs: &Inputs<'_>, facts: NodeFacts, csi: &Csi) -> Result<Plan, NodeError> {
    let (plan, ask) = first(inputs, facts, csi)?;
    let Some(ask) = ask else {
        return Ok(plan);
    };
    let caps = probe::probe(&ask.socket, ask.timeout)
        .await
        .map_err(NodeError::Probe)?;
    ask.finish(inputs, plan, caps)
}

/// [`decide`] from synchronous code (the CLI): a runtime is built only when a driver is asked.
pub fn decide_blocking(
    inputs: &Inputs<'_>,
    facts: NodeFacts,
    csi: &Csi,
) -> Result<Plan, NodeError> {
    let (plan, ask) = first(inputs, facts, csi)?;
    let Some(ask) = ask else {
        return Ok(plan);
    };
    let caps = probe::probe_blocking(&ask.socket, ask.timeout).map_err(NodeError::Probe)?;
    ask.finish(inputs, plan, caps)
}

/// A CSI volume's driver, to be asked before the plan is final.
struct Ask {
    facts: NodeFacts,
    volume_driver: String,
    socket: PathBuf,
    timeout: Duration,
}

/// The first decision, and whether the driver must be asked before it is final.
fn first(
    inputs: &Inputs<'_>,
    mut facts: NodeFacts,
    csi: &Csi,
) -> Result<(Plan, Option<Ask>), NodeError> {
    if let Csi::Known(known) = csi {
        facts.volume_mount_group = Some(*known);
    }
    let mut plan = plan::decide(inputs, &facts).map_err(NodeError::Decide)?;
    let Csi::Socket { path, timeout } = csi else {
        return Ok((plan, None));
    };
    let Some(volume_driver) = plan.volume.driver.clone() else {
        plan.warnings.push(format!(
            "the CSI socket {} was not asked: volume {:?} is not a CSI volume",
            path.display(),
            plan.volume.name
        ));
        return Ok((plan, None));
    };
    let ask = Ask {
        facts,
        volume_driver,
        socket: path.clone(),
        timeout: *timeout,
    };
    Ok((plan, Some(ask)))
}

impl Ask {
    /// Checks that the answer came from the volume's driver, and decides again with it.
    fn finish(
        mut self,
        inputs: &Inputs<'_>,
        first: Plan,
        caps: Capabilities,
    ) -> Result<Plan, NodeError> {
        if let Some(driver) = caps.driver.filter(|n| *n != self.volume_driver) {
            return Err(NodeError::OtherDriver {
                socket: self.socket,
                driver,
                volume: first.volume.name,
                volume_driver: self.volume_driver,
            });
        }
        self.facts.volume_mount_group = Some(caps.volume_mount_group);
        plan::decide(inputs, &self.facts).map_err(NodeError::Decide)
    }
}
