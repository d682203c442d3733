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
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::codegen::http;

/// The largest request the agent decodes. A Prepare request is a path and a few fields; a
/// Plan request carries a Pod, a PersistentVolume and a CSIDriver. Anything larger is
/// refused with InvalidArgument before it is decoded.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// A client of the metrics endpoint that has not sent its request headers this long after
/// connecting is disconnected (a slow or unfinished request holds no descriptor longer).
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// No metrics connection lasts longer than this, whatever it is doing; one request per
/// connection (no keep-alive), so no connection idles between requests.
pub const HTTP_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Metrics connections served at once; one accepted beyond that is closed at once, so a
/// flood of connections costs the agent a bounded number of descriptors.
pub const HTTP_MAX_CONNECTIONS: usize = 64;

/// gRPC calls in flight on one connection to the agent's socket, and HTTP/2 streams one
/// connection may open: bounds on what one caller can make the agent hold. Generous enough
/// for one caller preparing every volume of a full node at once (110 pods, several volumes
/// each), whose calls must all be in flight to join the walks already running.
pub const GRPC_CALLS_PER_CONNECTION: usize = 1024;

/// Everything `volsec serve` is told, apart from the socket (see [`Listener`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// Peer uids allowed to call (`--allow-uid`).
    pub allow_uids: Vec<u32>,
    /// Directories a volume may be below (`--allowed-root`).
    pub allowed_roots: Vec<PathBuf>,
    /// Jobs, threads, errors and timing.
    pub limits: Limits,
    /// Where `/metrics`, `/healthz` and `/readyz` listen, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How long running jobs may finish after a shutdown begins before they are cancelled.
    pub shutdown_grace: Duration,
}

/// Why the agent could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An `--allowed-root` cannot be used.
    #[error("--allowed-root: {0}")]
    AllowedRoot(#[source] security::PathError),
    /// The socket cannot be listened on.
    #[error("{0}")]
    Socket(#[source] io::Error),
    /// The metrics endpoint cannot listen.
    #[error("--metrics-listen {addr}: cannot listen: {source}")]
    Metrics {
        /// The address asked for.
        addr: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
}

/// The agent's listening socket: the one systemd passed by socket activation
/// (`LISTEN_FDS`), or one the agent binds itself, `0600`. Made before the async runtime
/// starts, because both edit process-wide state (the environment, the umask) that must not
/// change under running threads. A socket the agent bound is removed when this is dropped,
/// but only if the path still names that same socket.
#[derive(Debug)]
pub struct Listener {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    /// (device, inode) of a socket file this process created, to be removed at the end.
    owned: Option<(u64, u64)>,
}

impl Listener {
    /// systemd's socket if it passed one, otherwise a new socket at `path`.
    pub fn open(path: &Path) -> io::Result<Listener> {
        if let Some(listener) = security::inherited_socket()? {
            let path = listener
                .local_addr()?
                .as_pathname()
                .map_or_else(|| path.to_owned(), ToOwned::to_owned);
            return Ok(Listener {
                listener,
                path,
                owned: None,
            });
        }
        let listener = security::bind_socket(path)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(Listener {
            listener,
            path: path.to_owned(),
            owned: Some((meta.dev(), meta.ino())),
        })
    }

    /// A socket the caller bound (tests, embedders); it is left in place at the end.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<Listener> {
        let path = listener
            .local_addr()?
            .as_pathname()
            .map(ToOwned::to_owned)
            .unwrap_or_default();
        Ok(Listener {
            listener,
            path,
            owned: None,
        })
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // A socket systemd passed stays: systemd owns it and starts the next agent on it.
        // Ours is removed only while the path still names it: another agent that took the
        // path over since must keep its socket.
        if let Some((dev, ino)) = self.owned {
            let same = std::fs::symlink_metadata(&self.path)
                .is_ok_and(|m| m.file_type().is_socket() && m.dev() == dev && m.ino() == ino);
            if same {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Serves the agent on `listener` until `shutdown` completes, then stops taking new
/// Prepare calls, drains running jobs ([`drain_then_cancel`]) and returns.
pub async fn serve(
    listener: Listener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let roots = AllowedRoots::new(&config.allowed_roots).map_err(ServeError::AllowedRoot)?;
    let metrics = Arc::new(Metrics::new());
    let jobs = Jobs::new(config.limits.clone(), metrics.clone());
    let agent = Agent {
        jobs: jobs.clone(),
        peers: PeerCheck {
            allowed_uids: config.allow_uids.clone(),
        },
        roots: roots.clone(),
    };

    listener
        .listener
        .set_nonblocking(true)
        .map_err(ServeError::Socket)?;
    let incoming = tokio::net::UnixListener::from_std(
        listener.listener.try_clone().map_err(ServeError::Socket)?,
    )
    .map_err(ServeError::Socket)?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<VolumeAgentServer<Agent>>().await;

    let metrics_task = match config.metrics_listen {
        Some(addr) => Some(start_http(addr, metrics.clone()).await?),
        None => None,
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let grpc = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(GRPC_CALLS_PER_CONNECTION)
        .max_concurrent_streams(Some(GRPC_CALLS_PER_CONNECTION as u32))
        .layer(tower::util::MapResponseLayer::new(
            invalid_argument_for_bad_requests,
        ))
        .add_service(health_service)
        .add_service(VolumeAgentServer::new(agent).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(UnixListenerStream::new(incoming), async {
            let _ = stop_rx.await;
        });
    let grpc = tokio::spawn(grpc);
    metrics.set_ready(true);
    tracing::info!(
        socket = %listener.path().display(),
        socket_activated = listener.owned.is_none(),
        allowed_roots = %roots.describe(),
        allow_uids = ?config.allow_uids,
        max_jobs = config.limits.max_jobs,
        threads = config.limits.threads,
        metrics = ?config.metrics_listen,
        "volsec agent serving"
    );

    shutdown.await;

    metrics.set_ready(false);
    health.set_not_serving::<VolumeAgentServer<Agent>>().await;
    drain_then_cancel(&jobs, config.shutdown_grace).await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(5), grpc).await {
        Ok(Ok(Err(e))) => tracing::error!("gRPC server: {e}"),
        Err(_) => tracing::warn!("open calls did not end within 5 s of shutdown"),
        _ => {}
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    drop(listener);
    tracing::info!("volsec agent stopped");
    Ok(())
}

/// Stops new Prepare calls, lets running jobs finish for up to `grace`, then cancels what is
/// left: a cancelled pass leaves its root unchanged, so kubelet's retry on the next agent
/// redoes it.
async fn drain_then_cancel(jobs: &Jobs, grace: Duration) {
    jobs.stop_accepting();
    if jobs.drain(grace).await {
        return;
    }
    let n = jobs.cancel_all();
    tracing::warn!(
        jobs = n,
        ?grace,
        "shutdown grace expired: cancelling running jobs (their roots stay unchanged, so a retry redoes them)"
    );
    if !jobs.drain(Duration::from_secs(10)).await {
        tracing::error!("jobs did not stop within 10 s of being cancelled; exiting anyway");
    }
}

/// Completes on SIGTERM or SIGINT, logging each SIGHUP on the way: the `shutdown` of
/// `volsec serve`. The handlers are installed at once, so a signal sent as soon as this
/// returns is not missed.
pub fn termination() -> io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(async move { wait_for_termination(&mut term, &mut int, &mut hup).await })
}

async fn wait_for_termination(
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
    hup: &mut tokio::signal::unix::Signal,
) {
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return }
            _ = hup.recv() => tracing::info!("SIGHUP: nothing to reload (every setting is a flag; restart to change one)"),
        }
    }
}

async fn start_http(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Metrics { addr, source })?;
    let app = metrics::router(metrics);
    Ok(tokio::spawn(serve_http(listener, app)))
}

/// Serves the metrics endpoint with bounds on what a client can hold: at most
/// [`HTTP_MAX_CONNECTIONS`] connections, each closed when its request headers take longer
/// than [`HTTP_HEADER_TIMEOUT`], after one response, or after [`HTTP_CONNECTION_TIMEOUT`].
pub(crate) async fn serve_http(listener: tokio::net::TcpListener, app: axum::Router) {
    let slots = Arc::new(tokio::sync::Semaphore::new(HTTP_MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: back off instead of spinning on the error.
                tracing::warn!("metrics endpoint: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HTTP_HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(HTTP_CONNECTION_TIMEOUT, connection).await;
            drop(slot);
        });
    }
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
