//! `volsec plan --csi-socket`: the plan asks a real CSI node server (on a Unix socket) for
//! VOLUME_MOUNT_GROUP and delegates fsGroup to it, whatever fsGroupPolicy says.

use crate::common::{
    assert_success, driver_with_volume_mount_group, fixture, slow_driver, success_json, volsec_pod,
};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use volsec_grpc::csi::fake_driver::{self, Behaviour, FakeDriver};

/// `volsec plan --output json` for the OnRootMismatch pod on a RWO CSI volume, asking the
/// driver at `sock`; run off the runtime so the server keeps serving.
async fn plan_with_socket(sock: &Path, extra: &[&str]) -> Output {
    let mut cmd = volsec_pod(
        "plan",
        "pods/on-root-mismatch.yaml",
        "data",
        &["--output", "json", "--pv", "@pv/rwo.yaml", "--csi-socket"],
    );
    cmd.arg(sock).args(extra);
    output_off_the_runtime(cmd).await
}

/// Runs `cmd` on a blocking thread, so that the runtime keeps serving the fake driver.
async fn output_off_the_runtime(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_driver_with_volume_mount_group_gets_the_fs_group() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let driver = driver_with_volume_mount_group(&sock);
    // Even fsGroupPolicy None does not stop the delegation.
    let none = fixture("csidriver/none.yaml");
    let p = success_json(&plan_with_socket(&sock, &["--csidriver", none.to_str().unwrap()]).await);
    assert_eq!(p["ownership"]["action"], "delegate");
    assert_eq!(p["ownership"]["volume_mount_group"], "2000");
    assert_eq!(p["csi_volume_mount_group"], true);
    let why = p["ownership"]["reason"].as_str().unwrap();
    assert!(
        why.contains("reports VOLUME_MOUNT_GROUP") && why.contains("whatever fsGroupPolicy says"),
        "{why}"
    );
    driver.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_driver_without_it_leaves_fs_group_to_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let driver = FakeDriver::start(&sock, Behaviour::default()).unwrap();
    let p = success_json(&plan_with_socket(&sock, &[]).await);
    assert_eq!(p["ownership"]["action"], "recursive");
    assert_eq!(p["ownership"]["volume_mount_group"], Value::Null);
    assert_eq!(p["csi_volume_mount_group"], false);
    assert!(p["ownership"]["reason"]
        .as_str()
        .unwrap()
        .contains("does not report VOLUME_MOUNT_GROUP"));
    driver.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_failures_refuse_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let out = plan_with_socket(&missing, &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.sock: no CSI socket there"));

    let closed = dir.path().join("closed.sock");
    fake_driver::closed_socket(&closed).unwrap();
    let out = plan_with_socket(&closed, &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection refused"));

    let slow = dir.path().join("slow.sock");
    let driver = slow_driver(&slow);
    let out = plan_with_socket(&slow, &["--csi-timeout", "0.3"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no answer to NodeGetCapabilities within 300ms"),
        "{err}"
    );
    driver.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_leaves_a_delegated_volume_alone() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("csi.sock");
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), b"x").unwrap();
    let before = (
        crate::common::gid_mode(&vol),
        crate::common::gid_mode(&vol.join("f")),
    );
    let driver = driver_with_volume_mount_group(&sock);
    let mut cmd = volsec_pod(
        "apply",
        "pods/on-root-mismatch.yaml",
        "data",
        &["--pv", "@pv/rwo.yaml", "--csi-socket"],
    );
    cmd.arg(&sock).arg(&vol);
    let out = output_off_the_runtime(cmd).await;
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ownership: delegate (volume_mount_group \"2000\")"),
        "{text}"
    );
    assert!(text.contains("nothing for volsec to do"), "{text}");
    assert_eq!(
        (
            crate::common::gid_mode(&vol),
            crate::common::gid_mode(&vol.join("f"))
        ),
        before
    );
    driver.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_must_be_the_volume_s_driver() {
    let dir = tempfile::tempdir().unwrap();
    let right = dir.path().join("right.sock");
    let wrong = dir.path().join("wrong.sock");
    let behaviour = |name: &str| Behaviour {
        volume_mount_group: true,
        name: Some(name.to_string()),
        ..Default::default()
    };
    let a = FakeDriver::start(&right, behaviour("block.csi.example.com")).unwrap();
    let b = FakeDriver::start(&wrong, behaviour("nfs.csi.k8s.io")).unwrap();
    let p = success_json(&plan_with_socket(&right, &[]).await);
    assert_eq!(p["ownership"]["action"], "delegate");
    let out = plan_with_socket(&wrong, &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wrong.sock: the socket belongs to driver \"nfs.csi.k8s.io\" (Identity/GetPluginInfo), but volume \"data\" uses driver \"block.csi.example.com\""),
        "{err}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_csi_volume_does_not_ask_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let mut cmd = volsec_pod(
        "plan",
        "pods/security-context.yaml",
        "sec-ctx-vol",
        &["--output", "json", "--csi-socket"],
    );
    cmd.arg(&missing);
    let out = output_off_the_runtime(cmd).await;
    let p = success_json(&out);
    assert_eq!(p["csi_volume_mount_group"], Value::Null);
    assert!(p["warnings"][0]
        .as_str()
        .unwrap()
        .contains("was not asked: volume \"sec-ctx-vol\" is not a CSI volume"));
}
