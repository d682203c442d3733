//! Running the proxy: the gRPC server on the socket kubelet dials, the metrics and health
//! endpoints, and shutdown. The same shape as the agent's server ([`crate::agent::server`]).
//!
//! Every path is served, known or not: an axum fallback hands each HTTP/2 request to
//! [`Proxy::handle`], which forwards it as bytes. On shutdown new passes are refused,
//! running ones may finish for `shutdown_grace`, then are cancelled: a cancelled pass
//! leaves the volume's root unchanged, so the retry against the next proxy redoes it.

use super::codec::RawCodec;
use super::driver::{Driver, MAX_MESSAGE_BYTES};
use super::metrics::{self, Metrics};
use super::service::{Proxy, Settings};
use crate::agent::jobs::{Jobs, Limits};
use crate::agent::security::{self, AllowedRoots, PeerCheck};
use prost::bytes::Bytes;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::codegen::http;

/// Everything `volsec csi-proxy` is told, apart from its own socket (see [`Listener`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// The driver's moved socket (`--driver`).
    pub driver: PathBuf,
    /// fsGroupPolicy, change policy, relabel.
    pub settings: Settings,
    /// Directories a target_path may be below (`--allowed-root`).
    pub allowed_roots: Vec<PathBuf>,
    /// Peer uids allowed to call (`--allow-uid`; kubelet and the registrar run as root).
    pub allow_uids: Vec<u32>,
    /// Passes running at once, walker threads, errors kept, nice value.
    pub limits: Limits,
    /// Where `/metrics`, `/healthz` and `/readyz` listen, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How long running passes may finish after a shutdown begins before they are cancelled.
    pub shutdown_grace: Duration,
    /// Bound on a driver call whose caller sent no deadline.
    pub driver_timeout: Duration,
}

/// Why the proxy could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--allowed-root: {0}")]
    AllowedRoot(#[source] security::PathError),
    #[error("{0}")]
    Socket(#[source] io::Error),
    #[error("--metrics-listen {addr}: cannot listen: {source}")]
    Metrics { addr: SocketAddr, source: io::Error },
}

/// The socket kubelet and node-driver-registrar dial: the one systemd passed, or one the
/// proxy binds itself, `0600`, replacing a stale socket (the driver's old one after the
/// move, or the proxy's from a previous run). Removed at the end if still ours.
#[derive(Debug)]
pub struct Listener {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    owned: Option<(u64, u64)>,
}

impl Listener {
    /// systemd's socket if it passed one, otherwise a new socket at `path`. Call before
    /// the async runtime starts: binding sets the process umask.
    pub fn open(path: &Path) -> io::Result<Listener> {
        if let Some(listener) = security::inherited_socket()? {
            return Ok(Listener {
                listener,
                path: path.to_owned(),
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

    /// A socket the caller bound (tests, benchmarks); left in place at the end.
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

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((dev, ino)) = self.owned {
            let same = std::fs::symlink_metadata(&self.path)
                .is_ok_and(|m| m.file_type().is_socket() && m.dev() == dev && m.ino() == ino);
            if same {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// The tower service behind every path: decodes nothing, hands the payload to the proxy.
#[derive(Clone)]
pub struct ProxyService(pub Arc<Proxy>);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<axum::body::Body>> for ProxyService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let proxy = self.0.clone();
        Box::pin(async move {
            let method: Arc<str> = request.uri().path().into();
            let handler = tower::service_fn(move |call: tonic::Request<Bytes>| {
                let proxy = proxy.clone();
                let method = method.clone();
                async move { proxy.handle(&method, call).await }
            });
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// Serves the proxy on `listener` until `shutdown` completes, then refuses new passes,
/// drains or cancels the running ones and returns.
pub async fn serve(
    listener: Listener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let roots = AllowedRoots::new(&config.allowed_roots).map_err(ServeError::AllowedRoot)?;
    let metrics = Arc::new(Metrics::new());
    // The agent's job table: joining, queueing, limits and cancellation are the agent's.
    // Its own metrics stay internal; the proxy exports kubelet's shape instead.
    let jobs = Jobs::new(
        config.limits.clone(),
        Arc::new(crate::agent::metrics::Metrics::new()),
    );
    let proxy = Arc::new(Proxy::new(
        Driver::new(&config.driver, config.driver_timeout),
        config.settings.clone(),
        roots.clone(),
        PeerCheck {
            allowed_uids: config.allow_uids.clone(),
        },
        jobs.clone(),
        metrics.clone(),
    ));

    listener
        .listener
        .set_nonblocking(true)
        .map_err(ServeError::Socket)?;
    let incoming = tokio::net::UnixListener::from_std(
        listener.listener.try_clone().map_err(ServeError::Socket)?,
    )
    .map_err(ServeError::Socket)?;

    let metrics_task = match config.metrics_listen {
        Some(addr) => Some(start_http(addr, metrics.clone()).await?),
        None => None,
    };

    let routes = tonic::service::Routes::from(
        axum::Router::new().fallback_service(ProxyService(proxy.clone())),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // kubelet makes every call of a driver on one connection; the agent's cap on calls and
    // HTTP/2 streams per connection bounds what any one peer can hold open.
    let calls = crate::agent::server::GRPC_CALLS_PER_CONNECTION;
    let grpc = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(calls)
        .max_concurrent_streams(Some(calls as u32))
        .add_routes(routes)
        .serve_with_incoming_shutdown(UnixListenerStream::new(incoming), async {
            let _ = stop_rx.await;
        });
    let grpc = tokio::spawn(grpc);
    metrics.set_ready(true);
    tracing::info!(
        socket = %listener.path().display(),
        driver = %config.driver.display(),
        fs_group_policy = config.settings.fs_group_policy.as_str(),
        change_policy = %config.settings.change_policy,
        selinux_relabel = config.settings.selinux_relabel,
        allowed_roots = %roots.describe(),
        threads = config.limits.threads,
        metrics = ?config.metrics_listen,
        "volsec csi-proxy serving"
    );

    shutdown.await;

    metrics.set_ready(false);
    jobs.stop_accepting();
    if !jobs.drain(config.shutdown_grace).await {
        let n = jobs.cancel_all();
        tracing::warn!(
            passes = n,
            grace = ?config.shutdown_grace,
            "shutdown: cancelling running passes (their roots stay unchanged, so kubelet's retry redoes them)"
        );
        if !jobs.drain(Duration::from_secs(10)).await {
            tracing::error!("passes did not stop within 10 s of being cancelled; exiting anyway");
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
    drop(listener);
    tracing::info!("volsec csi-proxy stopped");
    Ok(())
}

async fn start_http(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Metrics { addr, source })?;
    let app = metrics::router(metrics);
    // The agent's bounded HTTP server: an unprivileged pod that reaches the port cannot
    // hold the proxy's descriptors.
    Ok(tokio::spawn(crate::agent::server::serve_http(
        listener, app,
    )))
}
