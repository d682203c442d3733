//! `volsec client`: drive a running agent by hand, one subcommand per RPC.

use super::exit::{Exit, Refusal};
use super::output::Format;
use serde_json::{json, Value};
use std::path::PathBuf;
use volsec_core::display;
use volsec_core::plan::gates::GateOverrides;
use volsec_grpc::agent::convert;
use volsec_grpc::agent::proto::{self, prepare_event::Event};

/// `println!` that ignores a closed stdout (`volsec client list | head`): SIGPIPE stays
/// ignored in the client (see `cli::main`), and a failed write must not panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

const EXAMPLES: &str = "Examples:
  volsec client list
  volsec client prepare --fs-group 2000 --change-policy OnRootMismatch /var/lib/kubelet/pods/UID/volumes/kubernetes.io~csi/pv1/mount
  volsec client --output json prepare --fs-group 2000 PATH
  volsec client cancel job-7
  volsec client plan --pod pod.yaml --volume data --pv pv.yaml --csidriver driver.yaml --selinux-enabled

Exit status: 0 done (or skipped), 1 partial or cancelled, 2 refused or unreachable.";

/// Call a running agent (`volsec serve`) by hand: plan, prepare, cancel, list.
///
/// Exit status: 0 done (or skipped), 1 the pass failed in part or was cancelled, 2 the call
/// was refused or the agent could not be reached.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment, after_long_help = EXAMPLES)]
pub struct Args {
    /// The agent's Unix socket.
    #[arg(
        long,
        value_name = "PATH",
        env = "VOLSEC_SOCKET",
        default_value = "/run/volsec/volsec.sock",
        global = true
    )]
    pub socket: PathBuf,

    /// Output format: text for people; json prints one JSON document (for prepare, the
    /// result: `volsec apply`'s document with the job's id, when it is done).
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub output: Format,

    #[command(subcommand)]
    pub call: Call,
}

#[derive(clap::Subcommand, Debug)]
pub enum Call {
    /// Ask who applies fsGroup and how the SELinux label is applied (the Plan RPC).
    Plan(PlanArgs),
    /// Prepare a volume and watch it: progress, kubelet's slow-pass warnings, the result.
    Prepare(PrepareArgs),
    /// Cancel a job by id, or every job on a path; its root is left unchanged.
    Cancel(CancelArgs),
    /// List the jobs running and queued.
    List,
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The Pod manifest (YAML or JSON).
    #[arg(long, value_name = "FILE")]
    pub pod: PathBuf,
    /// The volume's name in the pod's spec.volumes.
    #[arg(long, value_name = "NAME")]
    pub volume: String,
    /// The PersistentVolume bound to the volume's claim.
    #[arg(long, value_name = "FILE")]
    pub pv: Option<PathBuf>,
    /// The CSIDriver object of the volume's driver.
    #[arg(long, value_name = "FILE")]
    pub csidriver: Option<PathBuf>,
    /// SELinux is enabled on the node.
    #[arg(long)]
    pub selinux_enabled: bool,
    /// kubelet's feature gates, e.g. SELinuxMount=true,SELinuxChangePolicy=true.
    #[arg(long, value_name = "GATES", value_delimiter = ',')]
    pub feature_gates: Vec<String>,
    /// The Kubernetes minor version whose gate defaults apply (default: the newest).
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
    /// The CSI driver's socket; the agent asks it NodeGetCapabilities for VOLUME_MOUNT_GROUP.
    #[arg(long, value_name = "PATH")]
    pub csi_socket: Option<String>,
    /// Whether the CSI driver has VOLUME_MOUNT_GROUP, when already known (no probe then).
    #[arg(long, value_name = "BOOL")]
    pub volume_mount_group: Option<bool>,
    /// The node's container file label defaults, user:role:type:level (default: the node's).
    #[arg(long, value_name = "CONTEXT")]
    pub selinux_defaults: Option<String>,
    /// The volume's mounted root: with OnRootMismatch, a matching root turns `recursive`
    /// into `skip`. Must be below one of the agent's --allowed-root.
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct PrepareArgs {
    /// The volume's root directory, below one of the agent's --allowed-root.
    pub path: String,
    #[command(flatten)]
    pub job: super::flags::JobArgs,
    /// Report what would change without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Walk into nested mount points.
    #[arg(long)]
    pub cross_mounts: bool,
    /// kubelet's name of the volume's plugin, the `volume_plugin` label of kubelet's
    /// storage_operation_duration_seconds (e.g. kubernetes.io/csi:ebs.csi.aws.com).
    #[arg(long, value_name = "NAME")]
    pub volume_plugin: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct CancelArgs {
    /// The job id (from `volsec client list` or the prepare output).
    #[arg(required_unless_present = "path")]
    pub job_id: Option<String>,
    /// Cancel every job on this path instead.
    #[arg(long, value_name = "PATH", conflicts_with = "job_id")]
    pub path: Option<String>,
}

pub fn run(args: Args) -> Result<Exit, Refusal> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Refusal::new(format_args!("cannot start the async runtime: {e}")))?;
    runtime.block_on(call(args))
}

async fn call(args: Args) -> Result<Exit, Refusal> {
    let mut client = volsec_grpc::agent::client::connect(&args.socket)
        .await
        .map_err(|e| {
            Refusal::at(
                &args.socket,
                format_args!(
                    "cannot reach the agent: {} (is `volsec serve` running, and may this user open the socket?)",
                    source_chain(&e)
                ),
            )
        })?;
    let format = args.output;
    let outcome = match args.call {
        Call::List => client.list(proto::ListRequest {}).await.map(|r| {
            print_list(&r.into_inner(), format);
            Ok(Exit::Done)
        }),
        Call::Cancel(c) => client
            .cancel(proto::CancelRequest {
                job_id: c.job_id.unwrap_or_default(),
                path: c.path.unwrap_or_default(),
            })
            .await
            .map(|r| {
                let ids = r.into_inner().cancelled;
                match format {
                    Format::Json => out!("{}", json!({ "cancelled": ids })),
                    Format::Text => out!("cancelled: {}", ids.join(", ")),
                }
                Ok(Exit::Done)
            }),
        Call::Plan(p) => {
            let req = plan_request(&p)?;
            client.plan(req).await.map(|r| {
                print_plan(&r.into_inner(), format);
                Ok(Exit::Done)
            })
        }
        Call::Prepare(p) => prepare(&mut client, p, format).await,
    };
    outcome.unwrap_or_else(|status| {
        Err(Refusal::new(format_args!(
            "the agent refused the call ({:?}): {}",
            status.code(),
            status.message()
        )))
    })
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

async fn prepare(
    client: &mut proto::volume_agent_client::VolumeAgentClient<tonic::transport::Channel>,
    p: PrepareArgs,
    format: Format,
) -> Result<Result<Exit, Refusal>, tonic::Status> {
    let request = proto::PrepareRequest {
        path: p.path,
        fs_group: p.job.fs_group,
        read_only: p.job.read_only,
        change_policy: convert::policy_to_proto(p.job.change_policy) as i32,
        selinux_context: p.job.selinux_context.unwrap_or_default(),
        ignore_unsupported_labels: p.job.ignore_unsupported,
        dry_run: p.dry_run,
        cross_mounts: p.cross_mounts,
        volume_plugin: p.volume_plugin.unwrap_or_default(),
    };
    let mut stream = client.prepare(request.clone()).await?.into_inner();
    let mut seen = Seen::default();
    while let Some(ev) = stream.message().await? {
        match format {
            Format::Json => seen.add(&ev),
            Format::Text => print_event(&ev, &request),
        }
        if let Some(Event::Result(r)) = &ev.event {
            if format == Format::Json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&result_json(&ev.job_id, &request, r, seen))
                        .expect("JSON")
                );
            }
            return Ok(match r.outcome() {
                proto::Outcome::Complete | proto::Outcome::Skipped => Ok(Exit::Done),
                // The result printed above says why.
                proto::Outcome::Refused => Err(Refusal::reported()),
                _ => Ok(Exit::Partial),
            });
        }
    }
    Err(tonic::Status::unavailable(
        "the agent closed the stream before the result (it may have stopped); the job may still be running: see `volsec client list`",
    ))
}

fn print_event(ev: &proto::PrepareEvent, request: &proto::PrepareRequest) {
    let id = &ev.job_id;
    match &ev.event {
        Some(Event::Accepted(a)) => {
            let how = if a.joined {
                "joined running job"
            } else {
                "started job"
            };
            let queued = if a.queued_behind > 0 {
                format!(", queued behind {} job(s) on this path", a.queued_behind)
            } else {
                String::new()
            };
            out!("{how} {id} ({:?}{queued})", a.state());
        }
        Some(Event::Progress(p)) => out!(
            "{id}: {} inodes, {} changed, {} failed, {} inodes/s, {:.1} s",
            p.visited,
            p.changed,
            p.failed,
            p.inodes_per_second,
            p.elapsed_ms as f64 / 1000.0
        ),
        Some(Event::Warning(w)) => {
            let kind = if w.pod_event {
                "Event Warning "
            } else {
                "warning "
            };
            out!("{id}: {kind}{}: {}", w.reason, display::text(&w.message));
        }
        Some(Event::Result(r)) => print_result(id, request, r),
        None => {}
    }
}

/// The result as `volsec apply` prints a pass, after the job's outcome.
fn print_result(id: &str, request: &proto::PrepareRequest, r: &proto::Result) {
    out!("{id}: {:?}", r.outcome());
    match convert::report_from_result(request, r) {
        Some(report) => {
            use std::io::Write as _;
            let _ = write!(std::io::stdout().lock(), "{}", report.summary());
        }
        // Refused, or cancelled before it started: the error says why.
        None => out!("  {}", r.error),
    }
}

fn progress_json(p: &proto::Progress) -> Value {
    json!({
        "visited": p.visited, "changed": p.changed, "unchanged": p.unchanged,
        "failed": p.failed, "vanished": p.vanished, "elapsed_ms": p.elapsed_ms,
        "inodes_per_second": p.inodes_per_second,
    })
}

/// What the events before the result said, for the JSON document: whether the call joined
/// a running job, and kubelet's slow-pass warnings.
#[derive(Default)]
struct Seen {
    joined: bool,
    warnings: Vec<Value>,
}

impl Seen {
    fn add(&mut self, ev: &proto::PrepareEvent) {
        match &ev.event {
            Some(Event::Accepted(a)) => self.joined = a.joined,
            Some(Event::Warning(w)) => self.warnings.push(json!({
                "reason": w.reason, "message": w.message, "pod_event": w.pod_event,
                "processed": w.processed,
            })),
            _ => {}
        }
    }
}

/// The outcome as the reports spell it: `complete`, `partial`, `cancelled`, `skipped`,
/// `refused`.
fn outcome_word(outcome: proto::Outcome) -> String {
    outcome
        .as_str_name()
        .trim_start_matches("OUTCOME_")
        .to_lowercase()
}

/// The result as one document (`docs/schemas/client-prepare.json`): `volsec apply`'s
/// document and the job's id, whether this call joined it and the warnings it saw; for a
/// job that never walked (refused, or cancelled in the queue) the outcome and why.
fn result_json(id: &str, request: &proto::PrepareRequest, r: &proto::Result, seen: Seen) -> Value {
    let mut doc = match convert::report_from_result(request, r) {
        Some(report) => serde_json::to_value(&report).expect("a report serializes"),
        None => json!({ "outcome": outcome_word(r.outcome()), "error": r.error }),
    };
    doc["job_id"] = json!(id);
    doc["joined"] = json!(seen.joined);
    doc["warnings"] = json!(seen.warnings);
    doc
}

/// The wire's fsGroupChangePolicy as Kubernetes spells it, as `volsec apply` reports it.
fn policy_word(policy: proto::ChangePolicy) -> &'static str {
    match policy {
        proto::ChangePolicy::OnRootMismatch => "OnRootMismatch",
        proto::ChangePolicy::Always | proto::ChangePolicy::Unspecified => "Always",
    }
}

fn print_list(list: &proto::ListResponse, format: Format) {
    match format {
        Format::Json => {
            let jobs: Vec<Value> = list
                .jobs
                .iter()
                .map(|j| {
                    json!({
                        "job_id": j.job_id, "path": j.path,
                        "state": j.state().as_str_name().trim_start_matches("JOB_STATE_").to_lowercase(),
                        "fs_group": j.fs_group, "read_only": j.read_only,
                        "change_policy": policy_word(j.change_policy()),
                        "selinux_context": Some(&j.selinux_context).filter(|c| !c.is_empty()),
                        "dry_run": j.dry_run,
                        "callers": j.callers, "cancelling": j.cancelling,
                        "progress": j.progress.as_ref().map(progress_json),
                    })
                })
                .collect();
            out!("{}", json!({ "jobs": jobs }));
        }
        Format::Text => {
            if list.jobs.is_empty() {
                out!("no jobs");
            }
            for j in &list.jobs {
                let visited = j.progress.as_ref().map_or(0, |p| p.visited);
                let cancelling = if j.cancelling { ", cancelling" } else { "" };
                out!(
                    "{} {:?} {} fsGroup={} label={} callers={} visited={visited}{cancelling}",
                    j.job_id,
                    j.state(),
                    display::text(&j.path),
                    j.fs_group.map_or("-".into(), |g| g.to_string()),
                    if j.selinux_context.is_empty() {
                        "-"
                    } else {
                        &j.selinux_context
                    },
                    j.callers
                );
            }
        }
    }
}

fn plan_request(p: &PlanArgs) -> Result<proto::PlanRequest, String> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
    };
    // Checked against the release by the agent; only the syntax here, with plan's parser.
    let feature_gates = p
        .feature_gates
        .join(",")
        .parse::<GateOverrides>()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    Ok(proto::PlanRequest {
        pod: read(&p.pod)?,
        volume: p.volume.clone(),
        persistent_volume: p.pv.as_ref().map(read).transpose()?.unwrap_or_default(),
        csi_driver: p
            .csidriver
            .as_ref()
            .map(read)
            .transpose()?
            .unwrap_or_default(),
        node: Some(proto::NodeFacts {
            selinux_enabled: p.selinux_enabled,
            feature_gates,
            kubernetes_version: p.kubernetes_version.clone().unwrap_or_default(),
            volume_mount_group: p.volume_mount_group,
            csi_socket: p.csi_socket.clone().unwrap_or_default(),
            selinux_defaults: p.selinux_defaults.clone().unwrap_or_default(),
        }),
        path: p.path.clone().unwrap_or_default(),
    })
}

fn print_plan(plan: &proto::PlanResponse, format: Format) {
    match format {
        Format::Json => out!("{}", plan.plan_json),
        Format::Text => {
            out!(
                "ownership: {} ({})",
                plan.ownership_action,
                plan.ownership_reason
            );
            out!("selinux: {} ({})", plan.selinux_action, plan.selinux_reason);
            for w in &plan.warnings {
                out!("warning: {w}");
            }
            match &plan.prepare {
                Some(p) => {
                    let mut what = Vec::new();
                    if let Some(g) = p.fs_group {
                        what.push(format!(
                            "--fs-group {g} --change-policy {}",
                            match p.change_policy() {
                                proto::ChangePolicy::OnRootMismatch => "OnRootMismatch",
                                _ => "Always",
                            }
                        ));
                    }
                    if !p.selinux_context.is_empty() {
                        what.push(format!("--selinux-context {}", p.selinux_context));
                    }
                    out!("volsec prepares: {}", what.join(" "));
                }
                None => out!("nothing for volsec to do"),
            }
        }
    }
}
