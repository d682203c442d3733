//! The `Plan` RPC: the decision of `volsec plan`, from the same inputs sent over the socket.
//!
//! The manifests travel as the API server serves them (JSON or YAML bytes), which is what
//! the volume manager holds; they are parsed with the same code as `volsec plan --pod`,
//! and decided by the same pure function ([`volsec_core::plan::decide`]), with the node facts
//! gathered by the same code ([`crate::node`]): the CSI driver's VOLUME_MOUNT_GROUP (on
//! `csi_socket`, unless the caller says) and the container label defaults are looked up
//! when the request does not give them. An image root
//! (`volsec plan --image-root`) is not accepted: reading a path the caller names as host
//! root is what the agent refuses to do.

use super::convert;
use super::proto;
use super::security::AllowedRoots;
use crate::node::{self, Csi, NodeError, NodeSpec};
use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use k8s_openapi::api::storage::v1::CSIDriver;
use k8s_openapi::serde::de::DeserializeOwned;
use std::time::Duration;
use tonic::Status;
use volsec_core::plan::gates::GateOverrides;
use volsec_core::plan::{manifest, DecideError, Input, Inputs, Plan};

/// Manifests parsed at once. Parsing a manifest near its bounds takes CPU for a while; on
/// the async runtime's few threads two such calls stalled every other call (`List` waited
/// 22 s), so parsing runs on blocking threads, this many at a time, and the others wait.
pub const PARSES_AT_ONCE: usize = 2;

static PARSES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PARSES_AT_ONCE);

/// How long a call without a deadline may wait for its manifests to be parsed.
const PARSE_DEADLINE: Duration = Duration::from_secs(30);

/// Decides the plan for a request, or says which field is wrong. `deadline` is the
/// caller's (its `grpc-timeout`): past it the call answers DEADLINE_EXCEEDED instead of
/// going on for a caller that has given up; a parse already running ends on its blocking
/// thread, holding its place among [`PARSES_AT_ONCE`] until then.
pub async fn plan(
    roots: &AllowedRoots,
    req: &proto::PlanRequest,
    deadline: Option<Duration>,
) -> Result<proto::PlanResponse, Status> {
    if req.volume.is_empty() {
        return Err(Status::invalid_argument(
            "volume: the name of a volume in pod.spec.volumes is required",
        ));
    }
    let deadline = deadline.unwrap_or(PARSE_DEADLINE).min(PARSE_DEADLINE);
    let (pod, pv, driver) = tokio::time::timeout(deadline, parse_all(req))
        .await
        .map_err(|_| {
            Status::deadline_exceeded(
                "the manifests were not parsed before the call's deadline; the call was abandoned",
            )
        })??;
    let spec = node_spec(req.node.clone().unwrap_or_default());
    let facts = {
        let spec = spec.clone();
        // Without defaults in the request, the node's contexts file is read.
        tokio::task::spawn_blocking(move || spec.facts())
            .await
            .map_err(|e| Status::internal(format!("reading the node facts: {e}")))?
            .map_err(|e| node_error(&e))?
    };
    let inputs = Inputs {
        pod: &pod,
        volume: &req.volume,
        pv: pv.as_ref(),
        csi_driver: driver.as_ref(),
    };
    let mut plan = node::decide(&inputs, facts, &spec.csi)
        .await
        .map_err(|e| node_error(&e))?;
    if !req.path.is_empty() {
        let path = roots.check(&req.path)?;
        let root = volsec_core::walk::Root::open(&path)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        plan = plan.with_root(root.stat(), &path);
    }
    Ok(response(&plan, &req.path))
}

type Manifests = (Pod, Option<PersistentVolume>, Option<CSIDriver>);

/// Parses the request's manifests on a blocking thread, at most [`PARSES_AT_ONCE`] at once.
async fn parse_all(req: &proto::PlanRequest) -> Result<Manifests, Status> {
    let permit = PARSES
        .acquire()
        .await
        .map_err(|_| Status::unavailable("the agent is stopping"))?;
    let (pod, pv, driver) = (
        req.pod.clone(),
        req.persistent_volume.clone(),
        req.csi_driver.clone(),
    );
    let parsed = tokio::task::spawn_blocking(move || {
        // Held until the parse ends, even if the caller has gone.
        let _permit = permit;
        let pod: Pod = parse("pod", &pod)?
            .ok_or_else(|| Status::invalid_argument("pod: the Pod manifest is required"))?;
        let pv: Option<PersistentVolume> = parse("persistent_volume", &pv)?;
        let driver: Option<CSIDriver> = parse("csi_driver", &driver)?;
        Ok((pod, pv, driver))
    });
    parsed
        .await
        .map_err(|e| Status::internal(format!("parsing the manifests: {e}")))?
}

/// One manifest field: `None` when empty.
fn parse<T: k8s_openapi::Resource + DeserializeOwned>(
    field: &str,
    bytes: &[u8],
) -> Result<Option<T>, Status> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Status::invalid_argument(format!("{field}: the manifest is not UTF-8 ({e})"))
    })?;
    manifest::parse(field, text)
        .map(Some)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The request's node facts, as the node-facts gatherer takes them.
fn node_spec(facts: proto::NodeFacts) -> NodeSpec {
    let csi = match (facts.volume_mount_group, facts.csi_socket.as_str()) {
        (Some(known), _) => Csi::Known(known),
        (None, "") => Csi::NotAsked,
        (None, socket) => Csi::Socket {
            path: socket.into(),
            timeout: crate::csi::probe::DEFAULT_TIMEOUT,
        },
    };
    NodeSpec {
        kubernetes_version: Some(facts.kubernetes_version).filter(|v| !v.is_empty()),
        feature_gates: GateOverrides::from_map(facts.feature_gates),
        selinux_enabled: facts.selinux_enabled,
        selinux_defaults: Some(facts.selinux_defaults).filter(|c| !c.is_empty()),
        csi,
    }
}

/// A refusal, naming the request's field as the command line names its flag.
fn node_error(e: &NodeError) -> Status {
    let field = match e {
        NodeError::Decide(e) => return decide_error(e),
        NodeError::Version(_) => "node.kubernetes_version",
        NodeError::Gates(_) => "node.feature_gates",
        NodeError::SelinuxDefaults(_) => "node.selinux_defaults",
        NodeError::Probe(_) | NodeError::OtherDriver { .. } => "node.csi_socket",
    };
    let message = format!("{field}: {e}");
    match e {
        // The driver may come back: the request itself was fine.
        NodeError::Probe(_) => Status::failed_precondition(message),
        _ => Status::invalid_argument(message),
    }
}

fn decide_error(e: &DecideError) -> Status {
    let field = match e.input {
        Input::Pod => "pod",
        Input::PersistentVolume => "persistent_volume",
        Input::CsiDriver => "csi_driver",
    };
    Status::invalid_argument(format!("{field}: {e}"))
}

/// The enum's name as the JSON schema spells it (`recursive`, `mount_option`, ...).
fn action_name<T: serde::Serialize>(action: &T) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn response(plan: &Plan, path: &str) -> proto::PlanResponse {
    // kubelet names a CSI volume's plugin with its driver; volsec does not guess the name
    // of an in-tree plugin.
    let plugin = plan
        .volume
        .driver
        .as_deref()
        .map(crate::kubelet_metric::csi_plugin);
    let prepare = plan
        .job()
        .map(|job| convert::prepare_request(path, &job, plugin));
    proto::PlanResponse {
        plan_json: serde_json::to_string_pretty(plan).expect("a plan serializes"),
        ownership_action: action_name(&plan.ownership.action),
        ownership_reason: plan.ownership.reason.clone(),
        selinux_action: action_name(&plan.selinux.action),
        selinux_reason: plan.selinux.reason.clone(),
        prepare,
        warnings: plan.warnings.clone(),
    }
}
