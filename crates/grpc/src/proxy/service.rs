//! The proxy itself: every call is forwarded as bytes; three are edited, and a successful
//! NodePublishVolume is followed by the pass.
//!
//! - `NodeGetCapabilities`: VOLUME_MOUNT_GROUP is appended when the driver lacks it. When
//!   the driver has it, the driver owns fsGroup and the proxy edits nothing, anywhere.
//! - `NodeStageVolume`: `volume_mount_group` (and, with `--selinux-relabel`, the
//!   `context=` mount flag) is stripped; staging never walks (one staged device can serve
//!   pods with different fsGroups, and kubelet's own walk is per publish).
//! - `NodePublishVolume`: checked, stripped, forwarded; after the driver succeeds and
//!   `target_path` is a mount root, the pass runs in the agent's job table. A pass that
//!   outlives the caller's deadline answers ABORTED with its progress shortly before it,
//!   so kubelet retries (and shows the text as a FailedMount event); the retry joins the
//!   running pass.
//! - `NodeUnpublishVolume`: passes on the target are cancelled first (their open
//!   descriptors would make the driver's unmount fail with EBUSY), then forwarded.

use super::driver::Driver;
use super::metrics::Metrics;
use super::policy::{self, BadRequest, FsGroupPolicy};
use super::wire::{self, Call, Strip, VolumeRequest};
use crate::agent::jobs::{Attached, JobEntry, Jobs, Request as JobRequest};
use crate::agent::proto::{self as agent_proto, prepare_event::Event, JobState};
use crate::agent::security::{AllowedRoots, PathError, PeerCheck};
use crate::deadline::grpc_timeout;
use prost::bytes::Bytes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tonic::{Request, Response, Status};
use volsec_core::ownership::ChangePolicy;
use volsec_core::walk::{Root, RootError};

pub const NODE_GET_CAPABILITIES: &str = "/csi.v1.Node/NodeGetCapabilities";
pub const NODE_STAGE_VOLUME: &str = "/csi.v1.Node/NodeStageVolume";
pub const NODE_PUBLISH_VOLUME: &str = "/csi.v1.Node/NodePublishVolume";
pub const NODE_UNPUBLISH_VOLUME: &str = "/csi.v1.Node/NodeUnpublishVolume";
pub const GET_PLUGIN_INFO: &str = "/csi.v1.Identity/GetPluginInfo";

/// How the proxy decides, as `volsec csi-proxy`'s flags say.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The driver's `CSIDriver.spec.fsGroupPolicy`.
    pub fs_group_policy: FsGroupPolicy,
    /// `fsGroupChangePolicy` for volumes whose `volume_context` does not say.
    pub change_policy: ChangePolicy,
    /// Take `context=` out of the driver's mount flags and apply the label in the pass.
    pub selinux_relabel: bool,
}

/// The proxy's state, shared by every call.
pub struct Proxy {
    pub driver: Driver,
    pub settings: Settings,
    pub roots: AllowedRoots,
    pub peers: PeerCheck,
    pub jobs: Arc<Jobs>,
    pub metrics: Arc<Metrics>,
    /// The driver's own VOLUME_MOUNT_GROUP, as its last NodeGetCapabilities answer said.
    driver_has_group: Mutex<Option<bool>>,
    driver_name: Mutex<Option<String>>,
    /// The passes NodePublishVolume started, by target, each with its result once it
    /// has one: a retry finds its pass here whether it still runs (it waits on the same
    /// result) or ended (a success answers OK at once, never a second walk). Registered
    /// under this lock at submission, so no retry falls between a pass's end and its
    /// record. Forgotten at NodeUnpublishVolume.
    passes: Mutex<HashMap<PathBuf, Vec<Pass>>>,
}

/// The part of the caller's deadline kept back to answer in time: a tenth, between 50 ms
/// and 5 s (kubelet's 2 minutes: the proxy answers 5 s before kubelet would give up), and
/// never more than half of a very short deadline.
fn margin(timeout: Duration) -> Duration {
    (timeout / 10)
        .clamp(Duration::from_millis(50), Duration::from_secs(5))
        .min(timeout / 2)
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("volsec csi-proxy: {e}"))
}

impl Proxy {
    pub fn new(
        driver: Driver,
        settings: Settings,
        roots: AllowedRoots,
        peers: PeerCheck,
        jobs: Arc<Jobs>,
        metrics: Arc<Metrics>,
    ) -> Proxy {
        Proxy {
            driver,
            settings,
            roots,
            peers,
            jobs,
            metrics,
            driver_has_group: Mutex::new(None),
            driver_name: Mutex::new(None),
            passes: Mutex::new(HashMap::new()),
        }
    }

    /// Answers one call to `method`, records its metrics.
    pub async fn handle(
        self: Arc<Self>,
        method: &str,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, Status> {
        let arrived = Instant::now();
        let answer_by = grpc_timeout(request.metadata()).map(|t| arrived + t - margin(t));
        let result = self.dispatch(method, request, answer_by).await;
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics
            .call(method, code, arrived.elapsed().as_secs_f64());
        result
    }

    async fn dispatch(
        self: &Arc<Self>,
        method: &str,
        request: Request<Bytes>,
        answer_by: Option<Instant>,
    ) -> Result<Response<Bytes>, Status> {
        self.peers.check(&request)?;
        match method {
            NODE_GET_CAPABILITIES => self.node_get_capabilities(request, answer_by).await,
            NODE_STAGE_VOLUME => self.node_stage_volume(request, answer_by).await,
            NODE_PUBLISH_VOLUME => self.node_publish_volume(request, answer_by).await,
            NODE_UNPUBLISH_VOLUME => self.node_unpublish_volume(request, answer_by).await,
            GET_PLUGIN_INFO => {
                let response = self.forward(method, request, answer_by).await?;
                if let Some(name) = wire::plugin_name(response.get_ref()) {
                    *self.driver_name.lock().expect("lock") = Some(name);
                }
                Ok(response)
            }
            _ => self.forward(method, request, answer_by).await,
        }
    }

    async fn forward(
        &self,
        method: &str,
        request: Request<Bytes>,
        answer_by: Option<Instant>,
    ) -> Result<Response<Bytes>, Status> {
        self.driver
            .call(
                method,
                request.metadata(),
                request.get_ref().clone(),
                answer_by,
            )
            .await
    }

    async fn node_get_capabilities(
        &self,
        request: Request<Bytes>,
        answer_by: Option<Instant>,
    ) -> Result<Response<Bytes>, Status> {
        let response = self
            .forward(NODE_GET_CAPABILITIES, request, answer_by)
            .await?;
        // An answer the proxy cannot read is passed on as it is, and claims nothing.
        let Ok(has) = wire::has_node_capability(response.get_ref(), wire::VOLUME_MOUNT_GROUP)
        else {
            tracing::warn!("the driver's NodeGetCapabilities answer is not a valid message; forwarded unchanged");
            return Ok(response);
        };
        self.set_driver_has_group(has);
        if has {
            return Ok(response);
        }
        let (metadata, body, extensions) = response.into_parts();
        let edited = Bytes::from(wire::with_volume_mount_group(&body));
        Ok(Response::from_parts(metadata, edited, extensions))
    }

    fn set_driver_has_group(&self, has: bool) {
        let mut known = self.driver_has_group.lock().expect("lock");
        if *known != Some(has) {
            if has {
                tracing::info!(driver = %self.driver.path().display(), "the driver has VOLUME_MOUNT_GROUP itself: the proxy forwards everything unchanged");
            } else {
                tracing::info!(driver = %self.driver.path().display(), "the driver lacks VOLUME_MOUNT_GROUP: the proxy claims it and applies fsGroup after NodePublishVolume");
            }
        }
        *known = Some(has);
    }

    /// Whether the driver has VOLUME_MOUNT_GROUP itself; asked when not yet known (the
    /// proxy restarted between kubelet's NodeGetCapabilities and its publish).
    async fn driver_has_group(&self, answer_by: Option<Instant>) -> Result<bool, Status> {
        if let Some(known) = *self.driver_has_group.lock().expect("lock") {
            return Ok(known);
        }
        let response = self
            .driver
            .call(
                NODE_GET_CAPABILITIES,
                &Default::default(),
                Bytes::new(),
                answer_by,
            )
            .await?;
        let has = wire::has_node_capability(response.get_ref(), wire::VOLUME_MOUNT_GROUP)
            .map_err(|e| Status::unavailable(format!("volsec csi-proxy: the driver's NodeGetCapabilities answer cannot be read ({e}); retrying")))?;
        self.set_driver_has_group(has);
        Ok(has)
    }

    async fn driver_name(&self) -> String {
        if let Some(name) = self.driver_name.lock().expect("lock").clone() {
            return name;
        }
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        let name = self
            .driver
            .call(GET_PLUGIN_INFO, &Default::default(), Bytes::new(), deadline)
            .await
            .ok()
            .and_then(|r| wire::plugin_name(r.get_ref()));
        if let Some(n) = &name {
            *self.driver_name.lock().expect("lock") = Some(n.clone());
        }
        name.unwrap_or_else(|| "unknown".into())
    }

    fn strip(&self) -> Strip {
        Strip {
            volume_mount_group: true,
            context_flag: self.settings.selinux_relabel,
        }
    }

    async fn node_stage_volume(
        &self,
        request: Request<Bytes>,
        answer_by: Option<Instant>,
    ) -> Result<Response<Bytes>, Status> {
        if self.driver_has_group(answer_by).await? {
            return self.forward(NODE_STAGE_VOLUME, request, answer_by).await;
        }
        let r = wire::read_volume_request(Call::NodeStageVolume, request.get_ref())
            .map_err(|e| invalid(format!("NodeStageVolumeRequest: {e}")))?;
        if let Some(g) = &r.volume_mount_group {
            policy::parse_fs_group(g).map_err(invalid)?;
        }
        if self.settings.selinux_relabel {
            policy::context_label(&r).map_err(invalid)?;
        }
        let stripped = wire::strip_request(Call::NodeStageVolume, request.get_ref(), self.strip())
            .map_err(|e| invalid(format!("NodeStageVolumeRequest: {e}")))?;
        self.driver
            .call(
                NODE_STAGE_VOLUME,
                request.metadata(),
                stripped.into(),
                answer_by,
            )
            .await
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<Bytes>,
        answer_by: Option<Instant>,
    ) -> Result<Response<Bytes>, Status> {
        // NodeUnpublishVolumeRequest.target_path is field 2; read it without a subset proto.
        let target =
            read_string_field(request.get_ref(), 2).map(|t| PathBuf::from(t.trim_end_matches('/')));
        if let Some(target) = &target {
            self.cancel_passes(target).await;
        }
        let response = self
            .forward(NODE_UNPUBLISH_VOLUME, request, answer_by)
            .await?;
        if let Some(target) = target {
            self.passes.lock().expect("lock").remove(&target);
        }
        Ok(response)
    }

    async fn cancel_passes(&self, target: &Path) {
        let cancelled = self.jobs.cancel("", Some(&target.to_path_buf()));
        if cancelled.is_empty() {
            return;
        }
        tracing::info!(target = %volsec_core::display::path(target), jobs = ?cancelled, "NodeUnpublishVolume: cancelling passes on the target first");
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until
            && self
                .jobs
                .list()
                .iter()
                .any(|j| Path::new(&j.path) == target)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn node_publish_volume(
        self: &Arc<Self>,
        request: Request<Bytes>,
        answer_by: Option<Instant>,
    ) -> Result<Response<Bytes>, Status> {
        if self.driver_has_group(answer_by).await? {
            return self.forward(NODE_PUBLISH_VOLUME, request, answer_by).await;
        }
        let r = wire::read_volume_request(Call::NodePublishVolume, request.get_ref())
            .map_err(|e| invalid(format!("NodePublishVolumeRequest: {e}")))?;
        let work = self.work(&r)?;
        let stripped =
            wire::strip_request(Call::NodePublishVolume, request.get_ref(), self.strip())
                .map_err(|e| invalid(format!("NodePublishVolumeRequest: {e}")))?;
        let response = self
            .driver
            .call(
                NODE_PUBLISH_VOLUME,
                request.metadata(),
                stripped.into(),
                answer_by,
            )
            .await?;
        let Some(work) = work else {
            return Ok(response);
        };
        let job = work.request;
        if self.completed(&job) {
            tracing::debug!(volume_id = %r.volume_id, target = %volsec_core::display::path(&job.path), "the pass for this target and fsGroup already completed");
            return Ok(response);
        }
        let estimate = mount_root(&job.path)?;
        self.run_pass(&r.volume_id, job, estimate, answer_by)
            .await?;
        Ok(response)
    }

    /// What the pass must do for this request, checked before the driver is called, so a
    /// bad request changes nothing anywhere. `None`: nothing to do (kubelet would not
    /// have walked either).
    fn work(&self, r: &VolumeRequest) -> Result<Option<Work>, Status> {
        let fs_group = match &r.volume_mount_group {
            Some(g) => Some(policy::parse_fs_group(g).map_err(invalid)?),
            None => None,
        };
        let label = if self.settings.selinux_relabel {
            policy::context_label(r).map_err(invalid)?
        } else {
            None
        };
        let change_policy = policy::change_policy(self.settings.change_policy, r)
            .map_err(|e: BadRequest| invalid(e))?;
        if fs_group.is_none() && label.is_none() {
            return Ok(None);
        }
        let path = check_target(&self.roots, &r.target_path)?;
        let ownership = match (
            fs_group,
            policy::fs_group_eligible(self.settings.fs_group_policy, r),
        ) {
            (Some(g), Ok(())) => Some(policy::ownership(g, r)),
            (_, Err(reason)) => {
                tracing::info!(volume_id = %r.volume_id, target = %volsec_core::display::path(&path), reason, "no fsGroup pass: kubelet would not apply fsGroup to this volume");
                self.metrics.pass_skipped(reason);
                None
            }
            (None, Ok(())) => None,
        };
        if ownership.is_none() && label.is_none() {
            return Ok(None);
        }
        Ok(Some(Work {
            request: JobRequest {
                path,
                ownership,
                label,
                change_policy,
                // A filesystem that cannot store labels needs no relabel, as the
                // container runtimes treat it.
                ignore_unsupported_labels: true,
                dry_run: false,
                cross_mounts: false,
                // The proxy records kubelet's metric itself, with the driver's name
                // (`pass_finished`); its job table's metrics are not served.
                volume_plugin: String::new(),
            },
        }))
    }

    /// Whether a pass for exactly this request completed on its target.
    fn completed(&self, job: &JobRequest) -> bool {
        let passes = self.passes.lock().expect("lock");
        passes.get(&job.path).is_some_and(|list| {
            list.iter()
                .any(|p| p.request == *job && p.done.borrow().as_ref().is_some_and(succeeded))
        })
    }

    /// The pass for `job`: the one already running for it (joined), or a new one in the
    /// agent's job table.
    fn pass_for(
        self: &Arc<Self>,
        volume_id: &str,
        job: &JobRequest,
    ) -> Result<(Pass, bool), Status> {
        let mut passes = self.passes.lock().expect("lock");
        let list = passes.entry(job.path.clone()).or_default();
        if let Some(i) = list.iter().position(|p| p.request == *job) {
            let ended = list[i].done.borrow().clone();
            match ended {
                None => return Ok((list[i].clone(), true)),
                Some(r) if succeeded(&r) => return Ok((list[i].clone(), true)),
                // Failed or cancelled: this publish starts it again.
                Some(_) => {
                    list.remove(i);
                }
            }
        }
        let Attached {
            job: entry,
            accepted,
            events,
        } = self.jobs.submit_or_join(job.clone())?;
        let joined = matches!(&accepted.event, Some(Event::Accepted(a)) if a.joined);
        if !joined {
            self.metrics.pass_started();
            self.metrics.passes_running.inc();
        }
        let pass = Pass {
            request: job.clone(),
            done: self.watch(
                volume_id.to_string(),
                entry.clone(),
                events,
                job.clone(),
                !joined,
            ),
            job: entry,
        };
        list.push(pass.clone());
        Ok((pass, joined))
    }

    /// Runs (or joins) the pass and waits for it until the caller's deadline.
    async fn run_pass(
        self: &Arc<Self>,
        volume_id: &str,
        job: JobRequest,
        estimate: Option<u64>,
        answer_by: Option<Instant>,
    ) -> Result<(), Status> {
        let (pass, joined) = self.pass_for(volume_id, &job)?;
        if joined {
            self.metrics.pass_joined();
            tracing::info!(volume_id, target = %volsec_core::display::path(&job.path), job = %pass.job.id, "NodePublishVolume retry joined the running pass");
        } else {
            tracing::info!(volume_id, target = %volsec_core::display::path(&job.path), job = %pass.job.id, fs_group = ?job.ownership.map(|o| o.fs_group), label = ?job.label.as_ref().map(ToString::to_string), change_policy = %job.change_policy, "pass started after NodePublishVolume");
        }
        let mut done = pass.done.clone();
        let result = until(answer_by, async move {
            done.wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|r| r.clone())
        })
        .await;
        match result {
            Some(Some(r)) => outcome(volume_id, &job, &r),
            // The watcher went away without a result: only when the job was dropped.
            Some(None) => Err(Status::unavailable(
                "volsec csi-proxy: the pass ended without a result (the proxy is stopping); retry",
            )),
            None => {
                self.metrics.aborted_in_progress();
                let text = progress_text(volume_id, &job, &pass.job.info(), estimate);
                tracing::info!(volume_id, target = %volsec_core::display::path(&job.path), "{text}");
                Err(Status::aborted(text))
            }
        }
    }

    /// Follows a pass to its end whoever is waiting: records kubelet's metric (for a pass
    /// this call started) and publishes the result to every call that waits on it.
    fn watch(
        self: &Arc<Self>,
        volume_id: String,
        entry: Arc<JobEntry>,
        events: broadcast::Receiver<agent_proto::PrepareEvent>,
        job: JobRequest,
        started_here: bool,
    ) -> watch::Receiver<Option<agent_proto::Result>> {
        let (tx, rx) = watch::channel(None);
        let started = Instant::now();
        let proxy = self.clone();
        tokio::spawn(async move {
            let result = next_result(events).await;
            entry.detach();
            if started_here {
                proxy.metrics.passes_running.dec();
            }
            let Some(r) = result else { return };
            if started_here {
                let driver = proxy.driver_name().await;
                proxy.metrics.pass_finished(
                    &driver,
                    succeeded(&r),
                    started.elapsed().as_secs_f64(),
                );
            }
            tracing::info!(
                volume_id,
                target = %volsec_core::display::path(&job.path),
                outcome = ?r.outcome(),
                visited = r.visited,
                changed = r.changed,
                failed = r.failed,
                elapsed_ms = r.elapsed_ms,
                "pass finished"
            );
            tx.send_replace(Some(r));
        });
        rx
    }
}

/// A pass a NodePublishVolume started, and its result once it has one.
#[derive(Clone)]
struct Pass {
    request: JobRequest,
    job: Arc<JobEntry>,
    done: watch::Receiver<Option<agent_proto::Result>>,
}

/// `fut`'s output, or `None` once `answer_by` has passed.
async fn until<T>(
    answer_by: Option<Instant>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    match answer_by {
        Some(at) => tokio::time::timeout_at(at.into(), fut).await.ok(),
        None => Some(fut.await),
    }
}

/// The job's result event; `None` if the job went away without one.
async fn next_result(
    mut events: broadcast::Receiver<agent_proto::PrepareEvent>,
) -> Option<agent_proto::Result> {
    loop {
        match events.recv().await {
            Ok(ev) => {
                if let Some(Event::Result(r)) = ev.event {
                    return Some(r);
                }
            }
            // Missed progress events; the result is always the last one sent.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

struct Work {
    request: JobRequest,
}

fn succeeded(r: &agent_proto::Result) -> bool {
    matches!(
        r.outcome(),
        agent_proto::Outcome::Complete | agent_proto::Outcome::Skipped
    )
}

/// The pass's result as kubelet must see it: OK, or a final error naming the first
/// failing entry, or UNAVAILABLE when the pass was cancelled (kubelet retries).
fn outcome(volume_id: &str, job: &JobRequest, r: &agent_proto::Result) -> Result<(), Status> {
    use agent_proto::Outcome;
    let target = volsec_core::display::path(&job.path);
    match r.outcome() {
        Outcome::Complete | Outcome::Skipped => Ok(()),
        Outcome::Cancelled => Err(Status::unavailable(format!(
            "volsec csi-proxy: the pass on {target} was cancelled (the proxy is stopping or the volume is being unpublished); the volume's root was left unchanged, so the next NodePublishVolume redoes it"
        ))),
        Outcome::Partial => {
            let first = r.failures.first().map_or_else(
                || "no failure was recorded".to_string(),
                |f| format!("{}: {} failed: {} ({})", volsec_core::display::text(&f.path), f.op, f.message, f.errno),
            );
            tracing::warn!(volume_id, target = %target, failed = r.failed, "pass failed: {first}");
            Err(Status::internal(format!(
                "volsec csi-proxy: {} of {} entries of {target} could not be changed; first: {first}; the volume's root was left unchanged",
                r.failed, r.visited
            )))
        }
        Outcome::Refused | Outcome::Unspecified => Err(invalid(format!(
            "{target}: refused: {}",
            r.error
        ))),
    }
}

/// The ABORTED text kubelet shows as a FailedMount event: what is happening, how far it is.
fn progress_text(
    volume_id: &str,
    job: &JobRequest,
    info: &agent_proto::JobInfo,
    estimate: Option<u64>,
) -> String {
    let what = match (&job.ownership, &job.label) {
        (Some(o), Some(l)) => format!("fsGroup {} and SELinux label {l}", o.fs_group),
        (Some(o), None) => format!("fsGroup {}", o.fs_group),
        (None, Some(l)) => format!("SELinux label {l}"),
        (None, None) => "nothing".into(),
    };
    if info.state() == JobState::Queued {
        return format!(
            "volsec: volume {volume_id}: waiting for another pass on the same volume to finish before applying {what}; the pod starts when it is done (kubelet retries this call)"
        );
    }
    let p = info.progress.unwrap_or_default();
    let of = match estimate.filter(|e| *e >= p.visited && *e > 0) {
        Some(total) => format!(
            " of about {total} ({}%)",
            (p.visited.saturating_mul(100) / total).min(99)
        ),
        None => String::new(),
    };
    format!(
        "volsec: applying {what} to volume {volume_id}: {} inodes{of} done in {}s ({} changed, {} inodes/s); the pod starts when it finishes (kubelet retries this call)",
        p.visited,
        p.elapsed_ms / 1000,
        p.changed,
        p.inodes_per_second
    )
}

/// Checks `target_path` before the driver is called: absolute, no `..`, below an allowed
/// root, and no symlink on the part of it that already exists (the driver may create the
/// last component). The pass opens it again, without following a symlink, after the
/// driver's publish.
pub fn check_target(roots: &AllowedRoots, target: &str) -> Result<PathBuf, Status> {
    if target.is_empty() {
        return Err(invalid(
            "target_path is empty: kubelet always sends the volume's mount directory",
        ));
    }
    match roots.check(target) {
        Ok(path) => Ok(path),
        Err(PathError::Root(RootError::Missing(path))) => {
            let mut dir = path.parent();
            while let Some(d) = dir {
                match Root::open(d) {
                    Ok(_) => break,
                    Err(RootError::Missing(_)) => dir = d.parent(),
                    Err(e) => return Err(invalid(format!("target_path: {e}"))),
                }
            }
            Ok(path)
        }
        Err(PathError::Relative(p)) => Err(invalid(format!(
            "target_path {}: not an absolute path",
            p.display()
        ))),
        Err(e) => Err(invalid(format!("target_path: {e}"))),
    }
}

/// After the driver's publish: `target` must be a mount root, opened without following a
/// symlink. Returns the inodes in use on its filesystem (for progress texts).
fn mount_root(target: &Path) -> Result<Option<u64>, Status> {
    let root = Root::open(target).map_err(|e| match e {
        RootError::Symlink(_) => invalid(format!("target_path: {e}")),
        other => Status::unavailable(format!(
            "volsec csi-proxy: after NodePublishVolume: {other}; retrying"
        )),
    })?;
    let x = rustix::fs::statx(
        root.fd(),
        c"",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::empty(),
    )
    .map_err(|e| {
        Status::unavailable(format!(
            "volsec csi-proxy: {}: statx: {e}",
            target.display()
        ))
    })?;
    let known = x
        .stx_attributes_mask
        .contains(rustix::fs::StatxAttributes::MOUNT_ROOT);
    let is_root = x
        .stx_attributes
        .contains(rustix::fs::StatxAttributes::MOUNT_ROOT);
    if known && !is_root {
        return Err(Status::unavailable(format!(
            "volsec csi-proxy: {} is not a mount point after the driver's NodePublishVolume succeeded; volsec walks only a volume's own mount, never the node's directories (kubelet retries)",
            target.display()
        )));
    }
    Ok(rustix::fs::fstatvfs(root.fd())
        .ok()
        .map(|s| s.f_files.saturating_sub(s.f_ffree)))
}

/// A top-level string field of a message, if present and UTF-8.
fn read_string_field(buf: &[u8], number: u64) -> Option<String> {
    wire::top_level_string(buf, number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins() {
        assert_eq!(margin(Duration::from_secs(120)), Duration::from_secs(5));
        assert_eq!(margin(Duration::from_secs(2)), Duration::from_millis(200));
        assert_eq!(
            margin(Duration::from_millis(300)),
            Duration::from_millis(50)
        );
        assert_eq!(margin(Duration::from_millis(20)), Duration::from_millis(10));
    }
}
