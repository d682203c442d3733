//! Connecting to a running agent over its Unix socket (used by `volsec client`, the tests
//! and the benchmark).

use super::proto::volume_agent_client::VolumeAgentClient;
use hyper_util::rt::TokioIo;
use std::path::Path;
use tonic::transport::{Channel, Endpoint, Uri};

/// A client of the agent listening on `socket`. The URI is a placeholder that gRPC needs;
/// every connection goes to the socket.
pub async fn connect(socket: &Path) -> Result<VolumeAgentClient<Channel>, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::from_static("http://volsec.agent")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?;
    Ok(VolumeAgentClient::new(channel).max_decoding_message_size(64 << 20))
}
