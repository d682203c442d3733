//! `volsec csi-proxy`: a gRPC proxy between kubelet and a CSI driver's node plugin that
//! claims VOLUME_MOUNT_GROUP, so kubelet hands the fsGroup over instead of walking the
//! volume itself, and volsec's parallel, race-free pass runs after the driver's
//! NodePublishVolume.
//!
//! kubelet (1.26+, no feature gate) skips its serial fsGroup walk for a driver that lists
//! VOLUME_MOUNT_GROUP and sends the group in `MountVolume.volume_mount_group` instead.
//! The proxy sits on the socket kubelet dials, forwards every call to the driver's moved
//! socket as bytes, and edits only what it must:
//! - [`wire`]: the byte-level edits (append the capability, strip the field and the
//!   `context=` flag) and the reads, with unit tests;
//! - [`codec`]: the pass-through gRPC codec;
//! - [`driver`]: the connection to the driver, bounded by the caller's deadline;
//! - [`policy`]: kubelet's `supportsFSGroup`, the change policy, the masks, the label;
//! - [`service`]: the calls, the pass in the agent's job table, ABORTED with progress;
//! - [`metrics`]: kubelet's `storage_operation_duration_seconds` and the proxy's own;
//! - [`server`]: the socket, the server and shutdown.

pub mod codec;
pub mod driver;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod service;
pub mod wire;

pub use policy::FsGroupPolicy;
pub use server::{serve, Config, Listener, ServeError};
pub use service::Settings;
