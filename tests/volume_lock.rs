//! One pass per volume at a time, across processes: while one pass holds a volume (its
//! `flock` on `/run/volsec/locks/MAJOR:MINOR-INO`), a second `volsec apply`, `volsec
//! relabel` or agent job on the same volume refuses in one sentence and changes nothing,
//! or, given `--wait`, waits for it that long.

use crate::common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use volsec_core::prepare::lock_volume;
use volsec_core::walk::Root;

const BUSY: &str = "another volsec pass is running on this volume";

fn make_volume(root: &Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            std::fs::write(dir.join(format!("f{f}")), b"").unwrap();
        }
    }
}

/// Asserts `out` is a refusal (exit 2) whose one sentence says the volume is busy.
fn assert_busy(what: &str, out: &std::process::Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert!(err.contains(BUSY), "{what}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
}

/// Whether process `pid` holds an flock (`/proc/locks`).
fn holds_flock(pid: u32) -> bool {
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .any(|l| l.contains("FLOCK") && l.split_whitespace().nth(4) == Some(&pid.to_string()))
}

#[test]
fn a_pass_refuses_a_volume_another_pass_holds_and_changes_nothing() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    make_volume(&vol, 2, 5);
    let before = snapshot(&vol);
    let root = Root::open(&vol).unwrap();
    let held = lock_volume(&root).expect("the volume is free");
    for (what, args) in [
        ("apply", &["apply", "--fs-group", "2000"][..]),
        (
            "relabel",
            &[
                "relabel",
                "--context",
                "system_u:object_r:container_file_t:s0:c1,c2",
            ][..],
        ),
    ] {
        let out = volsec().args(args).arg(&vol).output().unwrap();
        assert_busy(what, &out);
    }
    assert_eq!(snapshot(&vol), before, "a refused pass changed the volume");
    // A dry run writes nothing and takes no lock.
    succeeds(
        volsec()
            .args(["apply", "--fs-group", "2000", "--dry-run", "--quiet"])
            .arg(&vol),
    );
    drop(held);
    succeeds(
        volsec()
            .args(["apply", "--fs-group", "2000", "--quiet"])
            .arg(&vol),
    );
}

#[test]
fn two_cli_passes_on_one_volume_never_run_at_once() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    make_volume(&vol, 40, 2_000);
    let mut first = volsec()
        .args(["apply", "--fs-group", "2000", "--threads", "1", "--quiet"])
        .arg(&vol)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !holds_flock(first.id()) {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first pass ended before it was seen holding the volume; make the volume larger"
        );
        assert!(Instant::now() < deadline, "the first pass never locked");
        std::thread::sleep(Duration::from_millis(2));
    }
    let second = volsec()
        .args(["apply", "--fs-group", "3000", "--quiet"])
        .arg(&vol)
        .output()
        .unwrap();
    let first_ended = first.try_wait().unwrap().is_some();
    assert!(
        !first_ended,
        "the first pass ended before the second was refused; make the volume larger"
    );
    assert_busy("the second apply", &second);
    assert!(first.wait().unwrap().success(), "the first pass completes");
    assert_eq!(gid_mode(&vol).0, 2000, "the root is the first pass's");
}

#[test]
fn the_agent_refuses_a_volume_a_cli_pass_holds() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    make_volume(&vol, 2, 5);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("volsec.sock");
    let mut agent = serve(&socket, fs.path())
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the agent never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = |gid: &str| -> Command {
        let mut c = volsec();
        c.arg("client")
            .arg("--socket")
            .arg(&socket)
            .args(["prepare", "--fs-group", gid])
            .arg(&vol);
        c
    };
    let root = Root::open(&vol).unwrap();
    let held = lock_volume(&root).expect("the volume is free");
    let out = run_with_timeout(client("2000"));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "the agent's pass was refused: {all}");
    assert!(all.contains(BUSY), "{all}");
    assert_ne!(gid_mode(&vol).0, 2000, "the refused job changed the root");
    drop(held);
    succeeds(&mut client("2000"));
    assert_eq!(gid_mode(&vol).0, 2000);
    let _ = agent.kill();
    let _ = agent.wait();
}

/// `--wait`: a pass holds back while another holds the volume and runs once it is free;
/// when the wait runs out it refuses in one sentence and changes nothing.
#[test]
fn a_pass_given_wait_waits_for_the_volume_or_refuses_when_the_wait_runs_out() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    make_volume(&vol, 2, 5);
    let before = snapshot(&vol);
    let root = Root::open(&vol).unwrap();
    let held = lock_volume(&root).expect("the volume is free");
    for (what, args) in [
        (
            "apply",
            &["apply", "--fs-group", "2000", "--wait", "300ms"][..],
        ),
        (
            "relabel",
            &[
                "relabel",
                "--context",
                "system_u:object_r:container_file_t:s0:c1,c2",
                "--wait",
                "300ms",
            ][..],
        ),
    ] {
        let started = Instant::now();
        let out = volsec().args(args).arg(&vol).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains("another volsec pass still held this volume after waiting"),
            "{what}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{what} refused before its wait ran out"
        );
    }
    assert_eq!(snapshot(&vol), before, "a refused pass changed the volume");
    let waiting = volsec()
        .args(["apply", "--fs-group", "2000", "--quiet", "--wait", "20s"])
        .arg(&vol)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        gid_mode(&vol).0,
        before[&vol].1,
        "the waiting pass ran while the volume was held"
    );
    drop(held);
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the waiting pass ran once the volume was free: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(gid_mode(&vol).0, 2000);
}
