//! A real CSI Node (and Identity) server on a Unix socket, for tests and demonstrations.
//!
//! The probe must be proven against the wire: real HTTP/2, real gRPC framing, real socket
//! errors. This server answers `NodeGetCapabilities` with or without VOLUME_MOUNT_GROUP,
//! optionally after a delay; [`closed_socket`] and [`not_grpc`] give the other failures a
//! driver socket can show (nothing listening, something else listening).

use super::proto::identity_server::{Identity, IdentityServer};
use super::proto::node_server::{Node, NodeServer};
use super::proto::node_service_capability::{rpc, Rpc, Type as CapabilityType};
use super::proto::{
    GetPluginInfoRequest, GetPluginInfoResponse, NodeGetCapabilitiesRequest,
    NodeGetCapabilitiesResponse, NodeServiceCapability,
};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the fake driver behaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Report VOLUME_MOUNT_GROUP (besides STAGE_UNSTAGE_VOLUME and GET_VOLUME_STATS).
    pub volume_mount_group: bool,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Serve the Identity service with this driver name (`None`: Node service only).
    pub name: Option<String>,
}

#[derive(Clone)]
struct Service(Behaviour);

#[tonic::async_trait]
impl Identity for Service {
    async fn get_plugin_info(
        &self,
        _request: tonic::Request<GetPluginInfoRequest>,
    ) -> Result<tonic::Response<GetPluginInfoResponse>, tonic::Status> {
        Ok(tonic::Response::new(GetPluginInfoResponse {
            name: self.0.name.clone().unwrap_or_default(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: Default::default(),
        }))
    }
}

#[tonic::async_trait]
impl Node for Service {
    async fn node_get_capabilities(
        &self,
        _request: tonic::Request<NodeGetCapabilitiesRequest>,
    ) -> Result<tonic::Response<NodeGetCapabilitiesResponse>, tonic::Status> {
        tokio::time::sleep(self.0.delay).await;
        let mut types = vec![rpc::Type::StageUnstageVolume, rpc::Type::GetVolumeStats];
        if self.0.volume_mount_group {
            types.push(rpc::Type::VolumeMountGroup);
        }
        let capabilities = types
            .into_iter()
            .map(|t| NodeServiceCapability {
                r#type: Some(CapabilityType::Rpc(Rpc { r#type: t as i32 })),
            })
            .collect();
        Ok(tonic::Response::new(NodeGetCapabilitiesResponse {
            capabilities,
        }))
    }
}

/// A running fake driver; stopped (and its socket removed) by [`FakeDriver::stop`] or drop.
pub struct FakeDriver {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeDriver {
    /// Binds `path` and serves the CSI Node service there (on the current tokio runtime).
    pub fn start(path: &Path, behaviour: Behaviour) -> io::Result<FakeDriver> {
        let listener = UnixListener::bind(path)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let service = Service(behaviour);
        let identity = service
            .0
            .name
            .is_some()
            .then(|| IdentityServer::new(service.clone()));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_optional_service(identity)
                .add_service(NodeServer::new(service))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeDriver {
            path: path.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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
