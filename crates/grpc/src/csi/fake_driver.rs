//! A real CSI Identity and Node server on a Unix socket, for tests, benchmarks and
//! demonstrations.
//!
//! The probe and the proxy must be proven against the wire: real HTTP/2, real gRPC
//! framing, real socket errors, real mounts. This server answers from raw bytes, so it
//! sees exactly what it was sent (every request is recorded byte for byte, fields no
//! `.proto` of volsec knows included), and it behaves as a driver does where it matters:
//! - `NodeGetCapabilities` with or without VOLUME_MOUNT_GROUP, optionally after a delay;
//! - `NodePublishVolume` bind-mounts a source tree on `target_path` (or only creates the
//!   directory, or leaves a symlink there: the cases a proxy must refuse to walk), and
//!   `NodeUnpublishVolume` unmounts it;
//! - any method can fail with a given code and message, or hang.
//!
//! [`closed_socket`] and [`not_grpc`] give the other failures a driver socket can show
//! (nothing listening, something else listening).

use crate::proxy::codec::RawCodec;
use crate::proxy::wire::{self, encode::Message, Call};
use prost::bytes::Bytes;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codegen::http;
use tonic::{Code, Status};

/// What NodePublishVolume does with `target_path`.
#[derive(Debug, Clone, Default)]
pub enum Publish {
    /// Nothing: answer OK (the default, for tests that never look at the target).
    #[default]
    Nothing,
    /// Create `target_path` and bind-mount this directory on it, as bind-mount based
    /// drivers (hostpath, local, NFS subdirectories) do.
    BindMount(PathBuf),
    /// Create `target_path` as a plain directory, mounting nothing: a broken driver.
    MkdirOnly,
    /// Leave a symlink at `target_path` pointing here: a hostile or broken driver.
    Symlink(PathBuf),
}

/// How the fake driver behaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Report VOLUME_MOUNT_GROUP (besides STAGE_UNSTAGE_VOLUME and GET_VOLUME_STATS).
    pub volume_mount_group: bool,
    /// Wait this long before answering NodeGetCapabilities.
    pub delay: Duration,
    /// Serve the Identity service with this driver name (`None`: Node service only).
    pub name: Option<String>,
    /// What NodePublishVolume does.
    pub publish: Publish,
    /// Methods (`/csi.v1.Node/NodePublishVolume`) that fail with this code and message.
    pub fail: HashMap<String, (Code, String)>,
    /// Methods that never answer.
    pub hang: Vec<String>,
}

/// One request as the driver received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `/csi.v1.Node/NodePublishVolume`.
    pub method: String,
    /// The message bytes, exactly as they arrived.
    pub bytes: Vec<u8>,
    /// The custom metadata (gRPC headers) that came with it.
    pub metadata: Vec<(String, String)>,
}

#[derive(Clone)]
struct Driver {
    behaviour: Arc<Behaviour>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A running fake driver; stopped (and its socket removed) by [`FakeDriver::stop`] or drop.
pub struct FakeDriver {
    path: PathBuf,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeDriver {
    /// Binds `path` and serves the CSI Node (and Identity) service there, on the current
    /// tokio runtime.
    pub fn start(path: &Path, behaviour: Behaviour) -> io::Result<FakeDriver> {
        let listener = UnixListener::bind(path)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let driver = Driver {
            behaviour: Arc::new(behaviour),
            received: Arc::default(),
        };
        let received = driver.received.clone();
        let routes =
            tonic::service::Routes::from(axum::Router::new().fallback_service(Service(driver)));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeDriver {
            path: path.to_path_buf(),
            received,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// The requests received for one method (`/csi.v1.Node/NodePublishVolume`).
    pub fn received_for(&self, method: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.method == method)
            .collect()
    }

    /// Stops serving and removes the socket.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for FakeDriver {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Clone)]
struct Service(Driver);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<axum::body::Body>> for Service {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let driver = self.0.clone();
        Box::pin(async move {
            let method = request.uri().path().to_string();
            let handler = tower::service_fn(move |call: tonic::Request<Bytes>| {
                let driver = driver.clone();
                let method = method.clone();
                async move { driver.answer(&method, call).await }
            });
            Ok(tonic::server::Grpc::new(RawCodec)
                .unary(handler, request)
                .await)
        })
    }
}

impl Driver {
    async fn answer(
        &self,
        method: &str,
        call: tonic::Request<Bytes>,
    ) -> Result<tonic::Response<Bytes>, Status> {
        let metadata = call
            .metadata()
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.to_string(), v.to_str().unwrap_or_default().to_string()))
                }
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        let bytes = call.into_inner();
        self.received.lock().expect("lock").push(Received {
            method: method.to_string(),
            bytes: bytes.to_vec(),
            metadata,
        });
        let b = &self.behaviour;
        if b.hang.iter().any(|m| m == method) {
            std::future::pending::<()>().await;
        }
        if let Some((code, message)) = b.fail.get(method) {
            return Err(Status::new(*code, message.clone()));
        }
        let reply = match method {
            "/csi.v1.Identity/GetPluginInfo" => match &b.name {
                Some(name) => Message::new()
                    .string(1, name)
                    .string(2, env!("CARGO_PKG_VERSION")),
                None => return Err(Status::unimplemented("csi.v1.Identity is not served")),
            },
            "/csi.v1.Node/NodeGetCapabilities" => {
                tokio::time::sleep(b.delay).await;
                let mut types = vec![1, 2];
                if b.volume_mount_group {
                    types.push(wire::VOLUME_MOUNT_GROUP);
                }
                types.into_iter().fold(Message::new(), |m, t| {
                    m.message(1, Message::new().message(1, Message::new().varint(1, t)))
                })
            }
            "/csi.v1.Node/NodeGetInfo" => Message::new().string(1, "fake-node"),
            "/csi.v1.Node/NodeGetVolumeStats" => Message::new().message(
                1,
                Message::new()
                    .varint(1, 1 << 30)
                    .varint(2, 2 << 30)
                    .varint(3, 1 << 30)
                    .varint(4, 1),
            ),
            "/csi.v1.Node/NodeStageVolume" | "/csi.v1.Node/NodeUnstageVolume" => Message::new(),
            "/csi.v1.Node/NodePublishVolume" => {
                let r = wire::read_volume_request(Call::NodePublishVolume, &bytes)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                publish(&b.publish, Path::new(&r.target_path))?;
                Message::new()
            }
            "/csi.v1.Node/NodeUnpublishVolume" => {
                let target = wire::top_level_string(&bytes, 2).unwrap_or_default();
                unpublish(Path::new(&target))?;
                Message::new()
            }
            other => {
                return Err(Status::unimplemented(format!(
                    "{other}: not implemented by the fake driver"
                )))
            }
        };
        Ok(tonic::Response::new(Bytes::from(reply.into_bytes())))
    }
}

fn io_status(what: &str, path: &Path, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what} {}: {e}", path.display()))
}

fn publish(how: &Publish, target: &Path) -> Result<(), Status> {
    if target.as_os_str().is_empty() {
        return Err(Status::invalid_argument("target_path missing in request"));
    }
    match how {
        Publish::Nothing => Ok(()),
        Publish::MkdirOnly => {
            std::fs::create_dir_all(target).map_err(|e| io_status("mkdir", target, e))
        }
        Publish::Symlink(to) => {
            if std::fs::symlink_metadata(target).is_ok_and(|m| m.is_symlink()) {
                return Ok(());
            }
            std::os::unix::fs::symlink(to, target).map_err(|e| io_status("symlink", target, e))
        }
        Publish::BindMount(source) => {
            std::fs::create_dir_all(target).map_err(|e| io_status("mkdir", target, e))?;
            // Idempotent, as the spec asks: a second publish of a mounted target is OK.
            if is_mount_root(target) {
                return Ok(());
            }
            rustix::mount::mount_bind(source, target)
                .map_err(|e| io_status("bind-mount onto", target, e))
        }
    }
}

fn unpublish(target: &Path) -> Result<(), Status> {
    if target.as_os_str().is_empty() {
        return Err(Status::invalid_argument("target_path missing in request"));
    }
    if std::fs::symlink_metadata(target).is_ok_and(|m| m.is_symlink()) {
        return std::fs::remove_file(target).map_err(|e| io_status("unlink", target, e));
    }
    if is_mount_root(target) {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty())
            .map_err(|e| io_status("unmount", target, e))?;
    }
    match std::fs::remove_dir(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_status("rmdir", target, e)),
        _ => Ok(()),
    }
}

fn is_mount_root(path: &Path) -> bool {
    rustix::fs::statx(
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        rustix::fs::StatxFlags::empty(),
    )
    .is_ok_and(|x| {
        x.stx_attributes
            .contains(rustix::fs::StatxAttributes::MOUNT_ROOT)
    })
}

/// Leaves a socket file at `path` with nothing listening: connecting is refused, as with a
/// driver that died without removing its socket.
pub fn closed_socket(path: &Path) -> io::Result<()> {
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    drop(listener);
    Ok(())
}

/// Serves something that is not gRPC at `path`: every connection gets an HTTP/1.1 error
/// and is closed.
pub fn not_grpc(path: &Path) -> io::Result<JoinHandle<()>> {
    let listener = UnixListener::bind(path)?;
    Ok(tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            let _ = stream.shutdown().await;
        }
    }))
}

/// A socket that accepts connections and never says a word: a hung driver.
pub fn silent(path: &Path) -> io::Result<JoinHandle<()>> {
    let listener = UnixListener::bind(path)?;
    Ok(tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    }))
}
