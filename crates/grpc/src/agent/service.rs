//! The `volsec.v1.VolumeAgent` service: checks each call, then hands it to the job table.
//!
//! Every check happens before a job exists, so a refused call touches nothing: the peer's
//! uid, then the fields (InvalidArgument with the field's name), then the path
//! (PermissionDenied outside the allowed roots or through a symlink).

use super::convert;
use super::jobs::{Attached, Jobs, Request as JobRequest};
use super::proto::volume_agent_server::VolumeAgent;
use super::proto::{self, prepare_event::Event};
use super::security::{AllowedRoots, PeerCheck};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use volsec_core::ownership::Ownership;
use volsec_core::selinux::Context;

/// The service state shared by all calls.
pub struct Agent {
    pub jobs: Arc<Jobs>,
    pub peers: PeerCheck,
    pub roots: AllowedRoots,
}

/// Turns a Prepare request into a job request, or says which field is wrong.
fn validate(roots: &AllowedRoots, req: &proto::PrepareRequest) -> Result<JobRequest, Status> {
    let change_policy = convert::policy_from_proto(req.change_policy)?;
    if let Some(g) = req.fs_group {
        volsec_core::ownership::fs_group(i64::from(g))
            .map_err(|e| Status::invalid_argument(format!("fs_group: {e}")))?;
    }
    let label = match req.selinux_context.as_str() {
        "" => None,
        s => Some(
            Context::parse(s)
                .map_err(|e| Status::invalid_argument(format!("selinux_context: {e}")))?,
        ),
    };
    if req.fs_group.is_none() && label.is_none() {
        return Err(Status::invalid_argument(
            "nothing to do: give fs_group, selinux_context, or both",
        ));
    }
    let volume_plugin = volume_plugin(&req.volume_plugin)?;
    let path = roots.check(&req.path)?;
    Ok(JobRequest {
        path,
        ownership: req.fs_group.map(|fs_group| Ownership {
            fs_group,
            read_only: req.read_only,
            owner: None,
        }),
        label,
        change_policy,
        ignore_unsupported_labels: req.ignore_unsupported_labels,
        dry_run: req.dry_run,
        cross_mounts: req.cross_mounts,
        volume_plugin,
    })
}

/// The `volume_plugin` label: kubelet's unknown-plugin name when none is given; bounded and
/// printable, since it becomes a metric series.
fn volume_plugin(name: &str) -> Result<String, Status> {
    const MAX: usize = 256;
    if name.is_empty() {
        return Ok(crate::kubelet_metric::UNKNOWN_PLUGIN.to_string());
    }
    if name.len() > MAX || name.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "volume_plugin: at most {MAX} bytes without control characters, like kubernetes.io/csi:DRIVER"
        )));
    }
    Ok(name.to_string())
}

/// Forwards a job's events to one caller until the result, or until the caller goes away;
/// the job itself runs on either way.
fn forward(attached: Attached) -> ReceiverStream<Result<proto::PrepareEvent, Status>> {
    let (tx, rx) = mpsc::channel(64);
    let Attached {
        job,
        accepted,
        mut events,
    } = attached;
    tokio::spawn(async move {
        if tx.send(Ok(accepted)).await.is_ok() {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        let last = matches!(ev.event, Some(Event::Result(_)));
                        if tx.send(Ok(ev)).await.is_err() || last {
                            break;
                        }
                    }
                    // A slow reader missed some progress events; the result is always
                    // the last one sent, so it is still ahead.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
        job.detach();
    });
    ReceiverStream::new(rx)
}

#[tonic::async_trait]
impl VolumeAgent for Agent {
    async fn plan(
        &self,
        request: Request<proto::PlanRequest>,
    ) -> Result<Response<proto::PlanResponse>, Status> {
        self.peers.check(&request)?;
        let deadline = crate::deadline::grpc_timeout(request.metadata());
        super::plan::plan(&self.roots, request.get_ref(), deadline)
            .await
            .map(Response::new)
    }

    type PrepareStream = ReceiverStream<Result<proto::PrepareEvent, Status>>;

    async fn prepare(
        &self,
        request: Request<proto::PrepareRequest>,
    ) -> Result<Response<Self::PrepareStream>, Status> {
        let uid = self.peers.check(&request)?;
        let req = validate(&self.roots, request.get_ref()).inspect_err(|e| {
            tracing::warn!(uid, path = %volsec_core::display::text(&request.get_ref().path), code = ?e.code(), "prepare refused: {}", e.message());
        })?;
        let attached = self.jobs.submit(req)?;
        Ok(Response::new(forward(attached)))
    }

    async fn cancel(
        &self,
        request: Request<proto::CancelRequest>,
    ) -> Result<Response<proto::CancelResponse>, Status> {
        self.peers.check(&request)?;
        let req = request.into_inner();
        if req.job_id.is_empty() && req.path.is_empty() {
            return Err(Status::invalid_argument("give job_id or path"));
        }
        let path = (!req.path.is_empty()).then(|| PathBuf::from(&req.path));
        let cancelled = self.jobs.cancel(&req.job_id, path.as_ref());
        if cancelled.is_empty() {
            let what = if req.job_id.is_empty() {
                &req.path
            } else {
                &req.job_id
            };
            return Err(Status::not_found(format!(
                "{what}: no such job (it may have finished)"
            )));
        }
        Ok(Response::new(proto::CancelResponse { cancelled }))
    }

    async fn list(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        self.peers.check(&request)?;
        Ok(Response::new(proto::ListResponse {
            jobs: self.jobs.list(),
        }))
    }
}
