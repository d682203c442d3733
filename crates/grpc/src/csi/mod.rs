//! The CSI Node service, as far as volsec needs it: whether a driver applies fsGroup itself
//! (`VOLUME_MOUNT_GROUP`).
//!
//! kubelet asks every CSI driver `NodeGetCapabilities` on its Unix socket before a mount;
//! if the answer lists VOLUME_MOUNT_GROUP, the driver gets the fsGroup and kubelet changes
//! no ownership. volsec asks the same question the same way ([`probe()`]), and ships a real
//! gRPC Node server ([`fake_driver`]) so the probe is tested against the wire, not a mock.

#[cfg(feature = "fake-driver")]
pub mod fake_driver;
pub mod probe;

pub use probe::{probe, Capabilities, ProbeError};

/// Code generated from `csi.proto` (package `csi.v1`).
pub mod proto {
    tonic::include_proto!("csi.v1");
}
