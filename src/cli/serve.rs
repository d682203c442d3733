//! `volsec serve`: the node agent.

use super::exit::{Exit, Refusal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use volsec_grpc::agent::jobs::Limits;
use volsec_grpc::agent::server::{self, Config, Listener};
use volsec_grpc::agent::slow::SlowTimes;

const EXAMPLES: &str = "Examples:
  volsec serve
  volsec serve --socket /run/volsec/volsec.sock --max-jobs 4 --threads 8 --log-format json
  volsec serve --allowed-root /var/lib/kubelet --allowed-root /mnt/disks --allow-uid 0
  volsec serve --metrics-listen none

SIGTERM stops new calls, lets jobs finish for up to --shutdown-grace, cancels the rest
(their roots stay unchanged, so a retry redoes them) and exits 0. SIGHUP reloads nothing.
Under systemd, the socket from volsec.socket (LISTEN_FDS) is used instead of --socket.";

/// Run the node agent: a gRPC service (`volsec.v1.VolumeAgent`) on a Unix socket for the
/// volume manager, with Prometheus metrics and health endpoints over HTTP.
///
/// The socket is created 0600 and root-owned; each call's peer uid (SO_PEERCRED) must be
/// one of --allow-uid, and each volume path must lie below one of --allowed-root and be
/// reachable without a symlink. Calls for the same path and parameters join one job;
/// other parameters queue behind it. SIGTERM stops new calls, lets jobs finish for up to
/// --shutdown-grace, cancels the rest (their roots stay unchanged) and exits 0.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment, after_long_help = EXAMPLES)]
pub struct Args {
    /// The Unix socket to listen on (a stale socket there is replaced; anything else at
    /// that path is refused).
    #[arg(
        long,
        value_name = "PATH",
        env = "VOLSEC_SOCKET",
        default_value = "/run/volsec/volsec.sock"
    )]
    pub socket: PathBuf,

    /// A uid allowed to call the agent (repeatable).
    #[arg(long = "allow-uid", value_name = "UID", default_value = "0")]
    pub allow_uid: Vec<u32>,

    /// A directory below which volumes may be prepared (repeatable).
    #[arg(
        long = "allowed-root",
        value_name = "DIR",
        default_value = "/var/lib/kubelet",
        value_parser = super::flags::allowed_root
    )]
    pub allowed_root: Vec<PathBuf>,

    /// Walks running at once; further jobs queue. OnRootMismatch checks that skip need no slot.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = super::flags::at_least_one)]
    pub max_jobs: usize,

    /// Walker threads of each walk (default: one per online CPU).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true, value_parser = super::flags::workers)]
    pub threads: usize,

    /// Nice value of walker threads, so the agent's answers keep priority over walks
    /// (0 to walk at the agent's own priority).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub walk_nice: i32,

    /// How many failures each job lists with their paths (all are counted).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_errors: usize,

    /// Address of the HTTP endpoint for /metrics, /healthz and /readyz, or `none`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9808")]
    pub metrics_listen: String,

    /// On SIGTERM, how long running jobs may finish before they are cancelled.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::flags::parse_duration)]
    pub shutdown_grace: Duration,

    /// Log format on stderr (`RUST_LOG` selects what is logged; default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// When kubelet's first slow-pass warning and Event come (kubelet: 30 s).
    #[arg(long, hide = true, env = "VOLSEC_SLOW_AFTER", default_value = "30s", value_parser = super::flags::parse_duration)]
    pub slow_after: Duration,

    /// How often "processed N files." comes after that (kubelet: 60 s).
    #[arg(long, hide = true, env = "VOLSEC_SLOW_EVERY", default_value = "60s", value_parser = super::flags::parse_duration)]
    pub slow_every: Duration,

    /// How often running jobs send a progress event.
    #[arg(long, hide = true, env = "VOLSEC_PROGRESS_INTERVAL", default_value = "1s", value_parser = super::flags::parse_duration)]
    pub progress_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(args: Args) -> Result<Exit, Refusal> {
    let metrics_listen = match args.metrics_listen.as_str() {
        "none" | "" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|e| {
            Refusal::new(format_args!(
                "--metrics-listen {addr:?}: {e} (expected e.g. 127.0.0.1:9808, or none)"
            ))
        })?),
    };
    let config = Config {
        allow_uids: args.allow_uid,
        allowed_roots: args.allowed_root,
        limits: Limits {
            max_jobs: args.max_jobs,
            threads: args.threads,
            max_errors: args.max_errors,
            slow: SlowTimes {
                after: args.slow_after,
                every: args.slow_every,
            },
            progress_every: args.progress_interval,
            walk_nice: args.walk_nice,
        },
        metrics_listen,
        shutdown_grace: args.shutdown_grace,
    };
    let logs = log_dispatch(args.log_format);
    let _ = tracing::dispatcher::set_global_default(logs);
    // The socket is bound (or systemd's adopted) before any runtime thread exists: both
    // change process-wide state, the umask and the environment.
    let listener = Listener::open(&args.socket).map_err(logged)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("volsec-agent")
        .build()
        .map_err(|e| Refusal::new(format_args!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(async {
            let shutdown = server::termination().map_err(server::ServeError::Socket)?;
            server::serve(listener, config, shutdown).await
        })
        .map_err(logged)?;
    Ok(Exit::Done)
}

/// An error that ends the agent: logged (the journal keeps it), then the refusal on stderr.
fn logged(e: impl std::fmt::Display) -> Refusal {
    tracing::error!("{e}");
    Refusal::new(e)
}

/// The agent's logger: `--log-format`, `RUST_LOG` (default info), on stderr.
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
