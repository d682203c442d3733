//! Names are the container's, paths the callers': neither may forge a line of output or
//! reach the operator's terminal. Text reports and logs show them escaped as `ls -b` does
//! (`\n`, `\e`, `\xNN`), and a path too long for a line cut short with its length.

use crate::common::*;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// A name whose newline would forge an error line; one that would turn the terminal red;
/// one that is not UTF-8.
const FORGED: &[u8] = b"a\nerror: forged";
const RED: &[u8] = b"\x1b[31mred";
const INVALID: &[u8] = b"bad\xff";

/// No raw control character but the newlines that end lines, and no line that a name made.
fn assert_clean(what: &str, text: &[u8]) {
    assert!(
        !text.iter().any(|&b| b < 0x20 && b != b'\n'),
        "{what}: a control character reached the output: {:?}",
        String::from_utf8_lossy(text)
    );
    let text = String::from_utf8_lossy(text);
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("error: forged")),
        "{what}: a name forged a line: {text}"
    );
}

#[test]
fn failures_and_nested_mounts_with_hostile_names_print_one_escaped_line_each() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    let mut pinned = Vec::new();
    for name in [FORGED, RED, INVALID] {
        let file = vol.join(OsStr::from_bytes(name));
        write_file(&file, 0o644);
        pinned.push(Immutable::set(&file));
    }
    // A nested mount point whose name forges the line that reports it.
    let mount = vol.join("m\n  nested mount skipped: /etc");
    mount_tmpfs_at(&mount);
    let out = run_with_timeout({
        let mut cmd = volsec();
        cmd.args(["apply", "--fs-group", "2000"]).arg(&vol);
        cmd
    });
    umount(&mount);
    drop(pinned);
    assert_eq!(out.status.code(), Some(1), "the immutable entries fail");
    assert_clean("the report", &out.stdout);
    let report = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("  error: "))
        .collect();
    assert_eq!(errors.len(), 3, "one line per failure: {report}");
    let vol = vol.display();
    for shown in [
        format!("{vol}/a\\nerror: forged: "),
        format!("{vol}/\\e[31mred: "),
        format!("{vol}/bad\\xff: "),
    ] {
        assert!(
            errors.iter().any(|l| l.contains(&shown)),
            "no error line shows {shown:?}: {report}"
        );
    }
    let mounts: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("nested mount skipped"))
        .collect();
    assert_eq!(mounts.len(), 1, "one line for the mount: {report}");
    assert!(
        mounts[0].contains("/m\\n  nested mount skipped: /etc (use --cross-mounts"),
        "{report}"
    );
}

#[test]
fn the_agent_logs_and_answers_hostile_and_huge_caller_paths_escaped_and_bounded() {
    let fs = Mounted::tmpfs();
    let vol = fs
        .path()
        .join(OsStr::from_bytes(b"v\nERROR forged \x1b[2J"));
    mkdir(&vol, 0o755);
    write_file(&vol.join("f"), 0o644);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("volsec.sock");
    let log = dir.path().join("agent.log");
    let mut agent = serve(&socket, fs.path())
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the agent never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = |path: &Path| {
        let mut c = volsec();
        c.arg("client")
            .arg("--socket")
            .arg(&socket)
            .args(["prepare", "--fs-group", "2000"])
            .arg(path);
        run_with_timeout(c)
    };
    let done = client(&vol);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_clean("the client's report", &done.stdout);
    // A 100 kB path below the allowed root (an argument holds at most 128 kB; a gRPC
    // caller may send megabytes): refused (too long to open), and no log line or answer
    // carries it whole.
    let huge = fs.path().join("d/".repeat(50_000).trim_end_matches('/'));
    let refused = client(&huge);
    assert_eq!(refused.status.code(), Some(2));
    let answer = String::from_utf8_lossy(&refused.stderr);
    assert!(
        answer.len() < 4096,
        "the refusal is a line: {} bytes",
        answer.len()
    );
    assert!(
        answer.contains(&format!("({} bytes)", huge.as_os_str().len())),
        "the refusal gives the path's length: {answer}"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    let logged = std::fs::read(&log).unwrap();
    assert_clean("the agent's log", &logged);
    let logged = String::from_utf8_lossy(&logged);
    assert!(
        logged.contains("v\\nERROR forged \\e[2J"),
        "the log names the volume, escaped: {logged}"
    );
    assert!(
        logged.len() < 64 << 10,
        "the log stays small: {} bytes",
        logged.len()
    );
    assert!(
        !logged.lines().any(|l| l.starts_with("ERROR forged")),
        "{logged}"
    );
}
