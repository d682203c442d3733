//! The CSI Node service, as far as volsec needs it: whether a driver applies fsGroup itself
//! (`VOLUME_MOUNT_GROUP`).

/// Code generated from `csi.proto` (package `csi.v1`).
pub mod proto {
    tonic::include_proto!("csi.v1");
}
