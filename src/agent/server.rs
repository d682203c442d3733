//! Running the agent: the gRPC server on the Unix socket, the metrics and health endpoints,
//! and the signal handling around them.
//!
//! The socket is the one systemd passes (socket activation, `LISTEN_FDS`) when there is
//! one, otherwise the agent creates `--socket` itself (see [`super::security`]).
//!
//! SIGTERM (and SIGINT) stop new Prepare calls at once, let running jobs finish for up to
//! `--shutdown-grace`, then cancel what is left (a cancelled pass leaves its root unchanged,
//! so kubelet's retry on the next agent redoes it) and exit 0. SIGHUP reloads nothing: every
//! setting is a flag, and changing one safely means a restart.

use super::jobs::{Jobs, Limits};
use super::metrics::{self, Metrics};
use super::proto::volume_agent_server::VolumeAgentServer;
use super::security::{self, AllowedRoots, PeerCheck};
use super::service::Agent;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::codegen::http;

/// The largest request the agent decodes. A Prepare request is a path and a few fields; a
/// Plan request carries a Pod, a PersistentVolume and a CSIDriver. Anything larger is
/// refused with InvalidArgument before it is decoded.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// Everything `volsec serve` is told.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub allow_uids: Vec<u32>,
    pub allowed_roots: Vec<PathBuf>,
    pub limits: Limits,
    pub metrics_listen: Option<SocketAddr>,
    pub shutdown_grace: Duration,
}

/// Runs the agent until SIGTERM or SIGINT; returns after a clean shutdown.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let roots = AllowedRoots::new(&config.allowed_roots).context("--allowed-root")?;
    let metrics = Arc::new(Metrics::new());
    let jobs = Jobs::new(config.limits.clone(), metrics.clone());
    let agent = Agent {
        jobs: jobs.clone(),
        peers: PeerCheck {
            allowed_uids: config.allow_uids.clone(),
        },
        roots: roots.clone(),
    };

    let (listener, own_socket) = match security::inherited_socket()? {
        Some(listener) => (listener, false),
        None => (security::bind_socket(&config.socket)?, true),
    };
    let socket_path = listener
        .local_addr()?
        .as_pathname()
        .map_or_else(|| config.socket.clone(), ToOwned::to_owned);
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<VolumeAgentServer<Agent>>().await;

    let metrics_task = match config.metrics_listen {
        Some(addr) => Some(start_http(addr, metrics.clone()).await?),
        None => None,
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let grpc = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            invalid_argument_for_bad_requests,
        ))
        .add_service(health_service)
        .add_service(VolumeAgentServer::new(agent).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    let grpc = tokio::spawn(grpc);
    metrics.set_ready(true);
    tracing::info!(
        socket = %socket_path.display(),
        socket_activated = !own_socket,
        allowed_roots = %roots.describe(),
        allow_uids = ?config.allow_uids,
        max_jobs = config.limits.max_jobs,
        threads = config.limits.threads,
        metrics = ?config.metrics_listen,
        "volsec agent serving"
    );

    wait_for_termination().await?;

    metrics.set_ready(false);
    health.set_not_serving::<VolumeAgentServer<Agent>>().await;
    jobs.stop_accepting();
    if !jobs.drain(config.shutdown_grace).await {
        let n = jobs.cancel_all();
        tracing::warn!(
            jobs = n,
            grace = ?config.shutdown_grace,
            "shutdown grace expired: cancelling running jobs (their roots stay unchanged, so a retry redoes them)"
        );
        if !jobs.drain(Duration::from_secs(10)).await {
            tracing::error!("jobs did not stop within 10 s of being cancelled; exiting anyway");
        }
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(5), grpc).await {
        Ok(Ok(Err(e))) => tracing::error!("gRPC server: {e}"),
        Err(_) => tracing::warn!("open calls did not end within 5 s of shutdown"),
        _ => {}
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    if own_socket {
        // A socket systemd passed stays: systemd owns it and starts the next agent on it.
        let _ = std::fs::remove_file(&socket_path);
    }
    tracing::info!("volsec agent stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT, logging each SIGHUP on the way.
async fn wait_for_termination() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(()) }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(()) }
            _ = hup.recv() => tracing::info!("SIGHUP: nothing to reload (every setting is a flag; restart to change one)"),
        }
    }
}

async fn start_http(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-listen {addr}: cannot listen"))?;
    let app = metrics::router(metrics);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics endpoint: {e}");
        }
    }))
}

/// gRPC answers an oversized request with OUT_OF_RANGE and an undecodable one with
/// INTERNAL; for the caller both are a bad request, so they become INVALID_ARGUMENT. The
/// agent's own handlers never return either code.
fn invalid_argument_for_bad_requests<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    let bad_request = match code {
        Some("11") => true,
        Some("13") => headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.contains("decode")),
        _ => false,
    };
    if bad_request {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
    response
}
