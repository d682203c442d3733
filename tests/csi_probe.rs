//! The CSI probe against real gRPC servers on Unix sockets: with and without
//! VOLUME_MOUNT_GROUP, slow, closed, missing, and something that is not gRPC.

use crate::common::{driver_with_volume_mount_group, slow_driver};
use std::time::Duration;
use volsec_grpc::csi::fake_driver::{self, Behaviour, FakeDriver};
use volsec_grpc::csi::{probe, ProbeError};

const QUICK: Duration = Duration::from_secs(5);

#[tokio::test]
async fn reports_volume_mount_group_when_the_driver_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let driver = driver_with_volume_mount_group(&sock);
    let caps = probe(&sock, QUICK).await.unwrap();
    assert!(caps.volume_mount_group);
    assert_eq!(
        caps.rpc,
        [
            "STAGE_UNSTAGE_VOLUME",
            "GET_VOLUME_STATS",
            "VOLUME_MOUNT_GROUP"
        ]
    );
    driver.stop().await;
}

#[tokio::test]
async fn reports_its_absence() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let driver = FakeDriver::start(&sock, Behaviour::default()).unwrap();
    let caps = probe(&sock, QUICK).await.unwrap();
    assert!(!caps.volume_mount_group);
    assert_eq!(caps.rpc, ["STAGE_UNSTAGE_VOLUME", "GET_VOLUME_STATS"]);
    driver.stop().await;
}

#[tokio::test]
async fn a_slow_driver_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let driver = slow_driver(&sock);
    let started = std::time::Instant::now();
    let err = probe(&sock, Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, ProbeError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.to_string()
            .contains("no answer to NodeGetCapabilities within 300ms"),
        "{err}"
    );
    driver.stop().await;
}

#[tokio::test]
async fn a_closed_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    fake_driver::closed_socket(&sock).unwrap();
    let err = probe(&sock, QUICK).await.unwrap_err();
    assert!(matches!(err, ProbeError::Refused(_)), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn a_stopped_driver_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let driver = FakeDriver::start(&sock, Behaviour::default()).unwrap();
    assert!(probe(&sock, QUICK).await.is_ok());
    driver.stop().await;
    fake_driver::closed_socket(&sock).unwrap();
    assert!(matches!(
        probe(&sock, QUICK).await.unwrap_err(),
        ProbeError::Refused(_)
    ));
}

#[tokio::test]
async fn a_missing_socket_and_a_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let err = probe(&sock, QUICK).await.unwrap_err();
    assert!(matches!(err, ProbeError::Missing(_)), "{err}");
    assert!(err.to_string().contains("no CSI socket there"), "{err}");
    std::fs::write(&sock, b"").unwrap();
    let err = probe(&sock, QUICK).await.unwrap_err();
    assert!(matches!(err, ProbeError::NotSocket(_)), "{err}");
}

#[tokio::test]
async fn something_that_is_not_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let server = fake_driver::not_grpc(&sock).unwrap();
    let err = probe(&sock, QUICK).await.unwrap_err();
    assert!(matches!(err, ProbeError::NotGrpc { .. }), "{err}");
    assert!(err.to_string().contains("does not speak gRPC"), "{err}");
    server.abort();
}

#[tokio::test]
async fn a_grpc_server_without_the_node_service() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("health.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let err = probe(&sock, QUICK).await.unwrap_err();
    assert!(matches!(err, ProbeError::NotCsi { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("does not implement csi.v1.Node/NodeGetCapabilities"),
        "{err}"
    );
    server.abort();
}

#[tokio::test]
async fn names_the_driver_when_it_serves_identity() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let driver = FakeDriver::start(
        &sock,
        Behaviour {
            name: Some("block.csi.example.com".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let caps = probe(&sock, QUICK).await.unwrap();
    assert_eq!(caps.driver.as_deref(), Some("block.csi.example.com"));
    driver.stop().await;
    let bare = dir.path().join("bare.sock");
    let driver = FakeDriver::start(&bare, Behaviour::default()).unwrap();
    assert_eq!(probe(&bare, QUICK).await.unwrap().driver, None);
    driver.stop().await;
}
