//! `volsec csi-proxy`: the proxy between kubelet and a CSI driver's node plugin.

use super::exit::{Exit, Refusal};
use super::serve::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use volsec_core::ownership::ChangePolicy;
use volsec_grpc::agent::jobs::Limits;
use volsec_grpc::agent::server::termination;
use volsec_grpc::proxy::{self, Config, FsGroupPolicy, Listener, Settings};

const EXAMPLES: &str =
    "How it is deployed (a sidecar in the driver's node DaemonSet, see packaging/csi-proxy/):
  1. the driver listens on a moved socket:      --endpoint=unix:///csi/csi.sock.internal
  2. the proxy listens where the driver was:    volsec csi-proxy --listen /csi/csi.sock \\
                                                  --driver /csi/csi.sock.internal
  3. node-driver-registrar keeps its arguments: --csi-address=/csi/csi.sock
     --kubelet-registration-path=/var/lib/kubelet/plugins/<driver>/csi.sock

Examples:
  # A block driver whose CSIDriver says fsGroupPolicy: ReadWriteOnceWithFSType (the default)
  volsec csi-proxy --listen /csi/csi.sock --driver /csi/csi.sock.internal

  # A bind-mount driver (NFS subdirectories, hostpath): File policy, skip prepared volumes,
  # apply the pod's SELinux label in the same pass instead of a context= mount
  volsec csi-proxy --listen /csi/csi.sock --driver /csi/csi.sock.internal \\
    --fs-group-policy File --change-policy OnRootMismatch --selinux-relabel

Per volume, volume_context[\"volsec.io/fs-group-change-policy\"] = Always | OnRootMismatch
(a StorageClass parameter or a PV's volumeAttributes) overrides --change-policy.

A pass longer than kubelet's 2-minute call answers ABORTED shortly before the deadline with
its progress (kubelet shows it as a FailedMount event and retries); the retry joins the same
pass. SIGTERM refuses new passes, lets running ones finish for --shutdown-grace, then cancels
them: a cancelled pass leaves the volume's root unchanged, so the next publish redoes it.";

/// Put volsec in front of a CSI driver: claim VOLUME_MOUNT_GROUP so kubelet hands over the
/// fsGroup, and apply it after NodePublishVolume with volsec's parallel, race-free pass.
///
/// kubelet skips its own serial fsGroup walk for a driver whose node service lists
/// VOLUME_MOUNT_GROUP and sends the group in the request instead. The proxy listens on the
/// socket kubelet dials, forwards every call to the driver byte for byte, and changes only:
///   NodeGetCapabilities  adds VOLUME_MOUNT_GROUP if the driver lacks it (if the driver has
///                        it, the proxy changes nothing anywhere);
///   NodeStageVolume      removes volume_mount_group before the driver sees it;
///   NodePublishVolume    removes it too, and once the driver's publish succeeded and
///                        target_path is a mount point, applies the fsGroup as kubelet
///                        would have (--fs-group-policy, --change-policy).
/// target_path must lie below --allowed-root and is never reached through a symlink.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment, after_long_help = EXAMPLES)]
pub struct Args {
    /// The socket kubelet and node-driver-registrar dial (where the driver's socket was).
    #[arg(long, value_name = "SOCKET", env = "VOLSEC_CSI_PROXY_LISTEN")]
    pub listen: PathBuf,

    /// The driver's own socket, moved aside (e.g. /csi/csi.sock.internal).
    #[arg(long, value_name = "SOCKET", env = "VOLSEC_CSI_PROXY_DRIVER")]
    pub driver: PathBuf,

    /// The driver's CSIDriver.spec.fsGroupPolicy: kubelet ignores it once the capability
    /// is claimed, so the proxy applies it. File: always; ReadWriteOnceWithFSType: only
    /// with an fsType and a single-node access mode; None: never.
    #[arg(long, value_name = "POLICY", default_value = "ReadWriteOnceWithFSType", value_parser = parse_fs_group_policy)]
    pub fs_group_policy: FsGroupPolicy,

    /// fsGroupChangePolicy for every volume (kubelet never sends the pod's): Always walks
    /// on every publish (a tree already right costs one stat per inode); OnRootMismatch
    /// skips volumes whose root already has the fsGroup, setgid and the mode bits.
    #[arg(long, value_name = "POLICY", default_value = "Always", value_parser = parse_change_policy)]
    pub change_policy: ChangePolicy,

    /// Remove a context="..." mount flag from what the driver sees and apply that label in
    /// the same pass (for drivers whose mounts cannot take -o context=, e.g. bind mounts).
    #[arg(long)]
    pub selinux_relabel: bool,

    /// A directory below which target_path must lie (repeatable).
    #[arg(
        long = "allowed-root",
        value_name = "DIR",
        default_value = "/var/lib/kubelet",
        value_parser = super::flags::allowed_root
    )]
    pub allowed_root: Vec<PathBuf>,

    /// A uid allowed to call the proxy (repeatable; kubelet and the registrar run as root).
    #[arg(long = "allow-uid", value_name = "UID", default_value = "0")]
    pub allow_uid: Vec<u32>,

    /// Walker threads of each pass (default: one per online CPU).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true, value_parser = super::flags::workers)]
    pub threads: usize,

    /// Passes running at once; more wait (OnRootMismatch checks that skip need no slot).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = super::flags::at_least_one)]
    pub max_passes: usize,

    /// Nice value of walker threads, so forwarded calls keep priority over walks.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub walk_nice: i32,

    /// Address of the HTTP endpoint for /metrics, /healthz and /readyz, or `none`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9809")]
    pub metrics_listen: String,

    /// On SIGTERM, how long running passes may finish before they are cancelled.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = super::flags::parse_duration)]
    pub shutdown_grace: Duration,

    /// Bound on a forwarded call whose caller sent no deadline (kubelet always sends one).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = super::flags::parse_duration)]
    pub driver_timeout: Duration,

    /// Log format on stderr (`RUST_LOG` selects what is logged; default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn parse_fs_group_policy(s: &str) -> Result<FsGroupPolicy, String> {
    s.parse()
        .map_err(|e: proxy::policy::ParseFsGroupPolicyError| e.to_string())
}

fn parse_change_policy(s: &str) -> Result<ChangePolicy, String> {
    s.parse()
        .map_err(|e: volsec_core::ownership::ParsePolicyError| e.to_string())
}

pub fn run(args: Args) -> Result<Exit, Refusal> {
    let metrics_listen = match args.metrics_listen.as_str() {
        "none" | "" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|e| {
            Refusal::new(format_args!(
                "--metrics-listen {addr:?}: {e} (expected e.g. 127.0.0.1:9809, or none)"
            ))
        })?),
    };
    if args.listen == args.driver {
        return Err(Refusal::new(
            "--listen and --driver name the same socket: move the driver's socket aside (e.g. csi.sock.internal) and listen where it was",
        ));
    }
    let config = Config {
        driver: args.driver,
        settings: Settings {
            fs_group_policy: args.fs_group_policy,
            change_policy: args.change_policy,
            selinux_relabel: args.selinux_relabel,
        },
        allowed_roots: args.allowed_root,
        allow_uids: args.allow_uid,
        limits: Limits {
            max_jobs: args.max_passes,
            threads: args.threads,
            walk_nice: args.walk_nice,
            ..Limits::default()
        },
        metrics_listen,
        shutdown_grace: args.shutdown_grace,
        driver_timeout: args.driver_timeout,
    };
    let _ = tracing::dispatcher::set_global_default(log_dispatch(args.log_format));
    // Bound before any runtime thread exists: binding sets the process umask.
    let listener = Listener::open(&args.listen).map_err(logged)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("volsec-csi-proxy")
        .build()
        .map_err(|e| Refusal::new(format_args!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(async {
            let shutdown = termination().map_err(proxy::ServeError::Socket)?;
            proxy::serve(listener, config, shutdown).await
        })
        .map_err(logged)?;
    Ok(Exit::Done)
}

fn logged(e: impl std::fmt::Display) -> Refusal {
    tracing::error!("{e}");
    Refusal::new(e)
}

/// `--log-format`, `RUST_LOG` (default info), on stderr.
fn log_dispatch(format: LogFormat) -> tracing::Dispatch {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => tracing::Dispatch::new(builder.json().finish()),
        LogFormat::Text => tracing::Dispatch::new(builder.finish()),
    }
}
