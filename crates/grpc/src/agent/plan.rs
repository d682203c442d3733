//! The `Plan` RPC: the decision of `volsec plan`, from the same inputs sent over the socket.
//!
//! The manifests travel as the API server serves them (JSON or YAML bytes), which is what
//! the volume manager holds; they are parsed with the same code as `volsec plan --pod`,
//! and decided by the same pure function ([`volsec_core::plan::decide`]). Only the node facts the
//! caller cannot know cheaply are looked up here: the CSI driver's VOLUME_MOUNT_GROUP (on
//! `csi_socket`, unless the caller says) and the container label defaults. An image root
//! (`volsec plan --image-root`) is not accepted: reading a path the caller names as host
//! root is what the agent refuses to do.

use super::jobs::policy_to_proto;
use super::proto;
use super::security::AllowedRoots;
use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use k8s_openapi::api::storage::v1::CSIDriver;
use k8s_openapi::serde::de::DeserializeOwned;
use std::path::Path;
use tonic::Status;
use volsec_core::plan::gates::{FeatureGates, KubeVersion};
use volsec_core::plan::{self, manifest, DecideError, Input, Inputs, NodeFacts, Plan};
use volsec_core::selinux::Context;

/// Decides the plan for a request, or says which field is wrong.
pub async fn plan(
    roots: &AllowedRoots,
    req: &proto::PlanRequest,
) -> Result<proto::PlanResponse, Status> {
    let pod: Pod = parse("pod", &req.pod)?
        .ok_or_else(|| Status::invalid_argument("pod: the Pod manifest is required"))?;
    if req.volume.is_empty() {
        return Err(Status::invalid_argument(
            "volume: the name of a volume in pod.spec.volumes is required",
        ));
    }
    let pv: Option<PersistentVolume> = parse("persistent_volume", &req.persistent_volume)?;
    let driver: Option<CSIDriver> = parse("csi_driver", &req.csi_driver)?;
    let node = node_facts(req.node.clone().unwrap_or_default()).await?;
    let inputs = Inputs {
        pod: &pod,
        volume: &req.volume,
        pv: pv.as_ref(),
        csi_driver: driver.as_ref(),
    };
    let mut plan = plan::decide(&inputs, &node).map_err(|e| decide_error(&e))?;
    if !req.path.is_empty() {
        let path = roots.check(&req.path)?;
        let root = volsec_core::walk::Root::open(&path)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        plan = plan.with_root(root.stat(), &path);
    }
    Ok(response(&plan, &req.path))
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

async fn node_facts(facts: proto::NodeFacts) -> Result<NodeFacts, Status> {
    let bad = |e: String| Status::invalid_argument(format!("node.{e}"));
    let version = match facts.kubernetes_version.as_str() {
        "" => KubeVersion::NEWEST,
        v => KubeVersion::parse(v).map_err(|e| bad(format!("kubernetes_version: {e}")))?,
    };
    let mut spec: Vec<String> = facts
        .feature_gates
        .iter()
        .map(|(name, on)| format!("{name}={on}"))
        .collect();
    spec.sort();
    let gates = FeatureGates::with_overrides(version, &spec.join(","))
        .map_err(|e| bad(format!("feature_gates: {e}")))?;
    let container_file_defaults = match facts.selinux_defaults.as_str() {
        "" => tokio::task::spawn_blocking(volsec_core::selinux::container_file_defaults)
            .await
            .map_err(|e| Status::internal(format!("reading the container label defaults: {e}")))?,
        c => Context::parse(c).map_err(|e| {
            bad(format!(
                "selinux_defaults: {e}; expected user:role:type:level"
            ))
        })?,
    };
    let volume_mount_group = match (facts.volume_mount_group, facts.csi_socket.as_str()) {
        (Some(known), _) => Some(known),
        (None, "") => None,
        (None, socket) => Some(
            crate::csi::probe::probe(Path::new(socket), crate::csi::probe::DEFAULT_TIMEOUT)
                .await
                .map_err(|e| Status::failed_precondition(format!("node.csi_socket: {e}")))?
                .volume_mount_group,
        ),
    };
    Ok(NodeFacts {
        selinux_enabled: facts.selinux_enabled,
        gates,
        volume_mount_group,
        container_file_defaults,
        image: None,
    })
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
    let prepare = plan.job().map(|job| proto::PrepareRequest {
        path: path.to_string(),
        fs_group: job.ownership.map(|o| o.fs_group),
        read_only: job.ownership.is_some_and(|o| o.read_only),
        change_policy: policy_to_proto(job.change_policy) as i32,
        selinux_context: job
            .label
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        ignore_unsupported_labels: job.ignore_unsupported_labels,
        dry_run: false,
        cross_mounts: false,
    });
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
