//! Manifests that would make `volsec plan` hang, spin or eat the node's memory: a device
//! that never ends, a FIFO nobody writes to, flow collections nested thousands deep, a file
//! larger than the API server would ever accept. Each is refused at once with exit 2 and
//! one sentence naming the file and the cause.

use crate::common::{mkfifo, run_with_timeout, volsec};
use std::path::Path;
use std::time::{Duration, Instant};

/// `volsec plan --pod POD --volume data`: exit 2 within a few seconds, one line on stderr
/// containing each of `says`.
fn refused_quickly(pod: &Path, says: &[&str]) {
    let mut cmd = volsec();
    cmd.args(["plan", "--volume", "data", "--pod"]).arg(pod);
    let started = Instant::now();
    let out = run_with_timeout(cmd);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{}: {err}", pod.display());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{}: took {:?}",
        pod.display(),
        started.elapsed()
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
    for s in says {
        assert!(err.contains(s), "{err:?} lacks {s:?}");
    }
}

#[test]
fn dev_zero_is_refused_not_read_forever() {
    refused_quickly(
        Path::new("/dev/zero"),
        &["/dev/zero", "a device", "regular file"],
    );
}

#[test]
fn a_fifo_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pod.yaml");
    mkfifo(&fifo, 0o600);
    refused_quickly(&fifo, &["pod.yaml", "a FIFO", "regular file"]);
}

#[test]
fn deep_flow_nesting_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let pod = dir.path().join("deep.yaml");
    let depth = 200_000;
    std::fs::write(&pod, format!("{}{}", "[".repeat(depth), "]".repeat(depth))).unwrap();
    refused_quickly(
        &pod,
        &["deep.yaml", "nest 200000 levels deep", "at most 64"],
    );
}

#[test]
fn a_four_mib_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pod = dir.path().join("big.yaml");
    let mut text = String::from("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n");
    while text.len() < 4 << 20 {
        text.push_str("# padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&pod, text).unwrap();
    refused_quickly(&pod, &["big.yaml", "larger than 3 MiB"]);
}
