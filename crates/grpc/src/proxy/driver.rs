//! The connection to the real driver, on its moved socket (`--driver`).
//!
//! One HTTP/2 connection is shared by every call and made again when the driver restarts.
//! A call is bounded by the caller's remaining deadline, so a driver that is gone or hangs
//! gives kubelet a retryable `UNAVAILABLE` with a sentence naming the socket, before kubelet
//! gives up on its own; kubelet then retries as it would with the driver itself.

use super::codec::RawCodec;
use hyper_util::rt::TokioIo;
use prost::bytes::Bytes;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Response, Status};

/// The largest message forwarded either way. CSI messages are small; the limit is only a
/// bound on memory, far above what any driver sends.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Headers that describe this hop's encoding, not the call: tonic sets its own.
const HOP_HEADERS: [&str; 4] = [
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "content-length",
];

/// The driver's socket and a lazily connected channel to it.
#[derive(Clone)]
pub struct Driver {
    path: PathBuf,
    channel: Channel,
    /// A bound for calls whose caller sent no deadline.
    default_timeout: Duration,
}

impl Driver {
    /// A driver at `path`. Nothing is dialled until the first call.
    pub fn new(path: &Path, default_timeout: Duration) -> Driver {
        Driver {
            path: path.to_path_buf(),
            channel: channel(path),
            default_timeout,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `payload` to `method` (`/csi.v1.Node/...`) with the caller's metadata, and
    /// returns the driver's answer, code and message as it sent them. `deadline` is when
    /// the answer must be back (the caller's deadline less a margin).
    pub async fn call(
        &self,
        method: &str,
        metadata: &MetadataMap,
        payload: Bytes,
        deadline: Option<Instant>,
    ) -> Result<Response<Bytes>, Status> {
        let budget = deadline.map_or(self.default_timeout, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let mut request = Request::new(payload);
        *request.metadata_mut() = forwardable(metadata);
        request.set_timeout(budget);
        let path = PathAndQuery::try_from(method)
            .map_err(|e| Status::unimplemented(format!("{method}: not a gRPC method path: {e}")))?;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let call = async {
            grpc.ready().await.map_err(|e| {
                Status::unavailable(format!(
                    "volsec csi-proxy: the CSI driver at {} is not reachable: {e}",
                    self.path.display()
                ))
            })?;
            grpc.unary(request, path, RawCodec).await
        };
        let no_answer = || {
            Status::unavailable(format!(
                "volsec csi-proxy: the CSI driver at {} did not answer {method} within {:.1}s; it may be hung or restarting",
                self.path.display(),
                budget.as_secs_f64()
            ))
        };
        match tokio::time::timeout(budget, call).await {
            Ok(Ok(mut response)) => {
                strip_hop_headers(response.metadata_mut());
                Ok(response)
            }
            // The request's own timeout (sent to the driver as grpc-timeout) can fire
            // first: the same hung driver.
            Ok(Err(status)) if timed_out(&status) => Err(no_answer()),
            Ok(Err(status)) => Err(self.transport_error(status)),
            Err(_) => Err(no_answer()),
        }
    }

    /// A status the driver sent passes through untouched; one that tonic made because the
    /// connection failed (it carries a source error) becomes UNAVAILABLE with the socket's
    /// name, so kubelet retries and the operator sees where.
    fn transport_error(&self, status: Status) -> Status {
        if std::error::Error::source(&status).is_none() {
            let mut status = status;
            strip_hop_headers(status.metadata_mut());
            return status;
        }
        let mut detail = status.message().to_string();
        let mut source = std::error::Error::source(&status);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        Status::unavailable(format!(
            "volsec csi-proxy: the CSI driver at {} is not reachable: {detail}",
            self.path.display()
        ))
    }
}

/// Whether tonic ended the call because its deadline passed (not the driver's answer).
fn timed_out(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        if s.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The caller's metadata minus this hop's own headers.
fn forwardable(metadata: &MetadataMap) -> MetadataMap {
    let mut out = metadata.clone();
    strip_hop_headers(&mut out);
    out
}

fn strip_hop_headers(metadata: &mut MetadataMap) {
    for h in HOP_HEADERS {
        metadata.remove(h);
    }
}

/// A gRPC channel to the Unix socket at `path`, connected on first use and again after
/// the peer restarts (also what the tests and benchmarks dial the proxy and the driver with).
pub fn channel(path: &Path) -> Channel {
    let socket = path.to_path_buf();
    // The URI is required by the API but unused: every connection goes to the socket.
    Endpoint::from_static("http://csi.sock")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?))
            }
        }))
}
