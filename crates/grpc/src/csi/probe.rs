//! Asks a CSI driver, on its Unix socket, whether it has the VOLUME_MOUNT_GROUP capability.
//!
//! The socket may be missing (driver not registered), refuse (driver not running), hang
//! (driver stuck), or belong to something that is not a CSI driver at all. Each case gets
//! its own one-sentence error, and the whole exchange is bounded by a timeout, so a plan
//! never waits forever and never guesses.

use super::proto::identity_client::IdentityClient;
use super::proto::node_client::NodeClient;
use super::proto::node_service_capability::{rpc, Type as CapabilityType};
use super::proto::{GetPluginInfoRequest, NodeGetCapabilitiesRequest};
use hyper_util::rt::TokioIo;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::UnixStream;

/// What the driver answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// VOLUME_MOUNT_GROUP (6) is among the RPC capabilities.
    pub volume_mount_group: bool,
    /// Every RPC capability, by its spec name (`STAGE_UNSTAGE_VOLUME`, ...).
    pub rpc: Vec<String>,
    /// The driver's name from `Identity/GetPluginInfo`; `None` if it does not serve it.
    pub driver: Option<String>,
}

/// Why the driver could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "{0}: no CSI socket there: the driver is not registered on this node, or the path is wrong"
    )]
    Missing(PathBuf),
    #[error("{0}: not a Unix socket; expected the CSI driver's socket, e.g. /var/lib/kubelet/plugins/<driver>/csi.sock")]
    NotSocket(PathBuf),
    #[error("{0}: connection refused: nothing listens on the socket (is the driver running?)")]
    Refused(PathBuf),
    #[error("{path}: no answer to NodeGetCapabilities within {timeout:?}: the driver hangs")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("{path}: the peer does not speak gRPC over HTTP/2 ({detail}); expected a CSI driver")]
    NotGrpc { path: PathBuf, detail: String },
    #[error("{path}: the gRPC server does not implement csi.v1.Node/NodeGetCapabilities ({detail}); expected a CSI node plugin")]
    NotCsi { path: PathBuf, detail: String },
    #[error("{path}: NodeGetCapabilities failed: {detail}")]
    Rpc { path: PathBuf, detail: String },
    #[error("{path}: cannot connect: {err}")]
    Io { path: PathBuf, err: io::Error },
}

/// kubelet's default CSI call timeout is much longer; a plan needs a quick answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Calls `/csi.v1.Node/NodeGetCapabilities` on the socket at `path`, within `timeout`.
pub async fn probe(path: &Path, timeout: Duration) -> Result<Capabilities, ProbeError> {
    check_socket(path)?;
    match tokio::time::timeout(timeout, ask(path)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout {
            path: path.to_path_buf(),
            timeout,
        }),
    }
}

/// [`probe`] from synchronous code (the CLI): a one-thread runtime for one call.
pub fn probe_blocking(path: &Path, timeout: Duration) -> Result<Capabilities, ProbeError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| ProbeError::Io {
            path: path.to_path_buf(),
            err,
        })?
        .block_on(probe(path, timeout))
}

fn check_socket(path: &Path) -> Result<(), ProbeError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ProbeError::Missing(path.into())),
        Err(err) => Err(ProbeError::Io {
            path: path.into(),
            err,
        }),
        Ok(m) if !m.file_type().is_socket() => Err(ProbeError::NotSocket(path.into())),
        Ok(_) => Ok(()),
    }
}

async fn ask(path: &Path) -> Result<Capabilities, ProbeError> {
    // Connect first, so a refused or vanished socket is reported as such rather than as a
    // transport error; the channel then uses this one connection.
    let stream = UnixStream::connect(path)
        .await
        .map_err(|err| match err.kind() {
            io::ErrorKind::ConnectionRefused => ProbeError::Refused(path.into()),
            io::ErrorKind::NotFound => ProbeError::Missing(path.into()),
            _ => ProbeError::Io {
                path: path.into(),
                err,
            },
        })?;
    let slot = Mutex::new(Some(stream));
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let stream = slot.lock().expect("not poisoned").take();
        async move {
            stream.map(TokioIo::new).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotConnected, "the connection was closed")
            })
        }
    });
    // The URI is required by the API but unused: the connector ignores it.
    let channel = tonic::transport::Endpoint::from_static("http://csi.sock")
        .connect_with_connector(connector)
        .await
        .map_err(|e| ProbeError::NotGrpc {
            path: path.into(),
            detail: chain(&e),
        })?;
    let response = NodeClient::new(channel.clone())
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .map_err(|status| status_error(path, status))?
        .into_inner();
    let rpc: Vec<String> = response
        .capabilities
        .iter()
        .filter_map(|c| {
            let Some(CapabilityType::Rpc(r)) = &c.r#type else {
                return None;
            };
            Some(
                rpc::Type::try_from(r.r#type)
                    .map(|t| t.as_str_name().to_string())
                    .unwrap_or_else(|_| format!("UNKNOWN({})", r.r#type)),
            )
        })
        .collect();
    let driver = match IdentityClient::new(channel)
        .get_plugin_info(GetPluginInfoRequest {})
        .await
    {
        Ok(info) => Some(info.into_inner().name).filter(|n| !n.is_empty()),
        // Every driver should serve Identity, but only the Node answer is needed.
        Err(status) if status.code() == tonic::Code::Unimplemented => None,
        Err(status) => return Err(status_error(path, status)),
    };
    Ok(Capabilities {
        volume_mount_group: rpc
            .iter()
            .any(|t| t == rpc::Type::VolumeMountGroup.as_str_name()),
        rpc,
        driver,
    })
}

fn status_error(path: &Path, status: tonic::Status) -> ProbeError {
    let detail = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        tonic::Code::Unimplemented => ProbeError::NotCsi {
            path: path.into(),
            detail,
        },
        // A peer that is not HTTP/2 makes the call fail in transport, with no gRPC status.
        tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::Internal
            if std::error::Error::source(&status).is_some() =>
        {
            ProbeError::NotGrpc {
                path: path.into(),
                detail: format!("{detail}: {}", chain(&status)),
            }
        }
        _ => ProbeError::Rpc {
            path: path.into(),
            detail,
        },
    }
}

/// An error and its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
