//! Fake CSI node servers on Unix sockets, as the CSI tests start them (inside a tokio
//! runtime).

use std::path::Path;
use std::time::Duration;
use volsec_grpc::csi::fake_driver::{Behaviour, FakeDriver};

/// A driver on `sock` that reports VOLUME_MOUNT_GROUP.
pub fn driver_with_volume_mount_group(sock: &Path) -> FakeDriver {
    FakeDriver::start(
        sock,
        Behaviour {
            volume_mount_group: true,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A driver on `sock` that reports VOLUME_MOUNT_GROUP, but only after 30 s: longer than
/// any timeout the tests give a probe.
pub fn slow_driver(sock: &Path) -> FakeDriver {
    FakeDriver::start(
        sock,
        Behaviour {
            volume_mount_group: true,
            delay: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .unwrap()
}
