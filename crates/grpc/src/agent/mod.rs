//! The node agent: volsec's gRPC service on a Unix socket, for the volume manager.
//!
//! kubelet reaches CSI drivers, the CRI runtime and device plugins on local sockets; the
//! agent sits beside them so the volume manager can ask for a plan, have a volume prepared
//! and watch it, cancel, and scrape metrics, without forking a process per mount. One
//! module per concern:
//! - [`security`]: the socket's mode, peer credentials, allowed roots;
//! - [`jobs`]: joining, queueing, limits, cancellation, the event stream;
//! - [`slow`]: kubelet's slow-pass messages;
//! - [`service`]: the `volsec.v1.VolumeAgent` RPCs;
//! - [`plan`]: the `Plan` RPC over the plan engine;
//! - [`metrics`]: Prometheus metrics, `/healthz`, `/readyz`;
//! - [`server`]: the server, signals and shutdown;
//! - [`client`]: connecting to a running agent;
//! - [`convert`]: volsec-core's types to and from the wire's.

pub mod client;
pub mod convert;
pub mod jobs;
pub mod metrics;
pub mod plan;
pub mod security;
pub mod server;
pub mod service;
pub mod slow;

/// Code generated from `volsec.proto` (package `volsec.v1`).
pub mod proto {
    tonic::include_proto!("volsec.v1");
}
