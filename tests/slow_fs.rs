//! The slow-volume bed of `volsec bench run --fs slow:LATENCY`: a FUSE passthrough that
//! answers every request after a latency, many requests at once. It mounts, a pass through
//! it leaves the backing tree right, and nothing is left behind: not on drop, not after a
//! run, not after an interrupted run.

use crate::common::*;
use std::path::Path;
use std::time::{Duration, Instant};
use volsec_bench::scratch::{FsKind, Scratch};

/// FUSE's `statfs` magic.
const FUSE_MAGIC: i64 = 0x6573_5546;

fn require_fuse() {
    require_root();
    assert!(
        Path::new("/dev/fuse").exists(),
        "the slow bed needs /dev/fuse (the fuse kernel module)"
    );
    assert!(
        std::process::Command::new("fusermount3")
            .arg("-V")
            .output()
            .is_ok(),
        "the slow bed needs fusermount3: apt-get install fuse3"
    );
}

/// Mount points in this process's mount table under `prefix`.
fn mounts_under(prefix: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(prefix))
        .collect()
}

#[test]
fn slow_bed_delays_each_call_serves_many_at_once_and_leaves_nothing() {
    require_fuse();
    let latency = Duration::from_millis(20);
    let scratch = Scratch::create(FsKind::Slow(latency), 1000, 0).unwrap();
    let view = scratch.path().to_path_buf();
    let backing = scratch.build_path().to_path_buf();
    assert_ne!(view, backing);
    #[allow(clippy::unnecessary_cast)]
    let magic = rustix::fs::statfs(&view).unwrap().f_type as i64;
    assert_eq!(magic, FUSE_MAGIC);
    assert!(
        scratch.description.starts_with("slow:20ms"),
        "{}",
        scratch.description
    );

    // A tree made in the backing directory is seen through the view.
    for i in 0..64 {
        write_file(&backing.join(format!("f{i}")), 0o644);
    }
    std::os::unix::fs::symlink("/etc/passwd", backing.join("link")).unwrap();

    // One call waits out the latency.
    let t = Instant::now();
    std::fs::symlink_metadata(view.join("f0")).unwrap();
    assert!(t.elapsed() >= latency, "{:?}", t.elapsed());

    // 64 calls at once take about one latency, not 64 (a lookup and a getattr each).
    let t = Instant::now();
    std::thread::scope(|s| {
        for i in 0..64 {
            let p = view.join(format!("f{i}"));
            s.spawn(move || std::fs::symlink_metadata(p).unwrap());
        }
    });
    assert!(t.elapsed() < latency * 16, "{:?}", t.elapsed());

    // volsec's pass through the view changes the backing tree, never the symlink's target.
    let passwd_gid = std::fs::symlink_metadata("/etc/passwd").unwrap();
    let out = volsec()
        .args(["apply", "--fs-group", "2345", "--threads", "16"])
        .arg(&view)
        .output()
        .unwrap();
    assert_success(&out);
    for i in 0..64 {
        assert_eq!(gid_mode(&backing.join(format!("f{i}"))).0, 2345);
    }
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::symlink_metadata("/etc/passwd").unwrap().gid(),
        passwd_gid.gid()
    );

    drop(scratch);
    assert!(!view.exists(), "{} left behind", view.display());
    assert!(!backing.exists(), "{} left behind", backing.display());
    let view = view.to_string_lossy().into_owned();
    assert!(mounts_under(&view).is_empty());
}

#[test]
fn bench_run_on_a_slow_bed_records_it_and_unmounts() {
    require_fuse();
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("slow.json");
    let mut cmd = volsec();
    cmd.args(["bench", "run", "--quiet", "--fs", "slow:200us"])
        .args(["--shapes", "kubelet", "--sizes", "300"])
        .args(["--scenarios", "ownership-all,relabel-all"])
        .args(["--repetitions", "1", "--threads", "0,8", "--json"])
        .arg(&json);
    // Hangs instead of ending if the bed cannot be unmounted.
    let out = run_with_timeout(cmd);
    assert_success(&out);
    let r = volsec_bench::results::Results::load(&json).unwrap();
    assert!(
        r.machine.filesystem.starts_with("slow:200us (FUSE"),
        "{}",
        r.machine.filesystem
    );
    assert!(r
        .rows
        .iter()
        .any(|row| row.implementation == "kubelet-serial"));
    assert!(r.rows.iter().any(|row| row.implementation == "go-selinux"));
}

#[test]
fn an_interrupted_slow_run_unmounts_and_removes_everything() {
    require_fuse();
    let mut child = volsec()
        .args(["bench", "run", "--quiet", "--fs", "slow:2ms"])
        .args(["--shapes", "kubelet", "--sizes", "2000"])
        .args(["--scenarios", "ownership-all", "--repetitions", "3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let prefix = std::env::temp_dir()
        .join(format!("volsec-bench-{pid}-"))
        .to_string_lossy()
        .into_owned();
    // Wait for the slow bed to be mounted, then interrupt the run mid-pass.
    let start = Instant::now();
    while mounts_under(&prefix).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "never mounted");
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before it mounted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // The fusermount3 helper may take a moment to see its socket close.
    let start = Instant::now();
    while !mounts_under(&prefix).is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        mounts_under(&prefix).is_empty(),
        "{:?}",
        mounts_under(&prefix)
    );
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
