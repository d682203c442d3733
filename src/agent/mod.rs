//! The node agent: volsec's gRPC service on a Unix socket.

/// Code generated from `volsec.proto` (package `volsec.v1`).
pub mod proto {
    tonic::include_proto!("volsec.v1");
}
