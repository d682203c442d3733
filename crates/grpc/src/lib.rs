//! # volsec-grpc
//!
//! volsec on the wire: the CSI Node capability probe kubelet's own question is asked with,
//! and the node agent (`volsec.v1.VolumeAgent`) that callers on the node use. The protocol
//! contracts (`csi.proto`, `volsec.proto`) are compiled by `build.rs` with a pure-Rust
//! protobuf compiler. The filesystem work itself is `volsec-core`'s.
//!
//! - [`csi`]: the CSI Node service as far as volsec needs it.
//! - [`agent`]: the node agent's gRPC service, security, jobs and metrics.
//! - [`node`]: the node facts a plan is decided from, for `volsec plan` and the agent.
//! - [`deadline`]: the caller's `grpc-timeout`, for the agent and the proxy.
//! - [`kubelet_metric`]: kubelet's `storage_operation_duration_seconds`, for the agent and
//!   the CSI proxy.

pub mod agent;
pub mod csi;
pub mod deadline;
pub mod kubelet_metric;
pub mod node;
pub mod proxy;
