//! Every `--output json` document validates against its schema in `docs/schemas/`, on
//! success and on refusal: each command runs as a user runs it (the real binary, a real
//! tmpfs, a real agent on a Unix socket), its stdout must be exactly one JSON document, and
//! the `jsonschema` crate (draft 2020-12) checks it. A refusal must also exit 2 and say its
//! sentence on stderr, as before.

use crate::common::*;

use serde_json::Value;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `docs/schemas/NAME.json`, compiled.
fn schema(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schemas")
        .join(format!("{name}.json"));
    let schema: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("{}: not a valid schema: {e}", path.display()))
}

/// Runs `cmd`, expects exit `code`, and returns stdout as the one JSON document it must be,
/// checked against `docs/schemas/NAME.json`.
fn document(cmd: &mut Command, code: i32, name: &str) -> Value {
    let out = cmd.output().expect("run volsec");
    let stdout = String::from_utf8(out.stdout).expect("JSON is UTF-8");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    // serde_json reads exactly one value from the whole text (trailing whitespace aside).
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{cmd:?}: stdout is not one JSON document ({e}):\n{stdout}"));
    let errors: Vec<String> = schema(name)
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{cmd:?}: the document does not match docs/schemas/{name}.json:\n{}\n{doc:#}",
        errors.join("\n")
    );
    if name == "refusal" {
        assert!(
            stderr.starts_with("volsec: ") || stderr.contains("error:"),
            "{stderr}"
        );
    }
    doc
}

/// Runs a setup command that must succeed.
fn run(cmd: &mut Command) {
    let status = cmd.status().expect("start a setup command");
    assert!(status.success(), "{cmd:?}: {status}");
}

fn json_cmd(args: &[&str]) -> Command {
    let mut cmd = volsec();
    cmd.args(args);
    cmd
}

/// `apply` and `relabel`: the pass report, with the counts the report owes
/// (`visited == changed + unchanged + failed + vanished + skipped_mounts + excluded`), the
/// owner and an excluded entry as asked, hard links and
/// device nodes counted, and two nested mounts whose names differ only in bytes that are
/// not UTF-8 told apart by their exact bytes; then each command's refusals.
#[test]
fn pass_reports_and_their_refusals() {
    let fs = Mounted::tmpfs();
    let vol = fs.path().join(OsStr::from_bytes(b"vol\xff"));
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("a"), "a").unwrap();
    std::fs::create_dir(vol.join("lost+found")).unwrap();
    std::fs::hard_link(vol.join("a"), vol.join("b")).unwrap();
    run(Command::new("mknod")
        .arg(vol.join("null"))
        .args(["c", "1", "3"]));
    let mut mounts = Vec::new();
    for name in [&b"m\xfe"[..], &b"m\xfd"[..]] {
        let dir = vol.join(OsStr::from_bytes(name));
        std::fs::create_dir(&dir).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "volsec-nested"])
            .arg(&dir));
        mounts.push(dir);
    }
    let unmount = || {
        for m in &mounts {
            let _ = Command::new("umount").arg(m).status();
        }
    };

    let r = document(
        json_cmd(&[
            "apply",
            "--fs-group",
            "2000",
            "--owner",
            "1000",
            "--exclude",
            "lost+found",
            "--output",
            "json",
        ])
        .arg(&vol),
        0,
        "report",
    );
    unmount();
    let n = |k: &str| r[k].as_u64().unwrap();
    assert_eq!(
        n("visited"),
        n("changed")
            + n("unchanged")
            + n("failed")
            + n("vanished")
            + n("skipped_mounts")
            + n("excluded"),
        "{r:#}"
    );
    assert_eq!(r["excluded"], 1, "lost+found");
    assert_eq!(r["owner"], 1000);
    assert_eq!(r["hard_linked"], 2, "a and b: one inode, two names");
    assert_eq!(r["devices"], 1, "the null device node");
    let hex: String = vol
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r["path_bytes"], hex.as_str(), "the root's bytes exactly");
    assert_eq!(
        r["nested_mounts"][0], r["nested_mounts"][1],
        "both read m\u{fffd}"
    );
    let mut exact: Vec<&str> = r["nested_mounts_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    exact.sort_unstable();
    assert!(
        exact[0].ends_with("6dfd") && exact[1].ends_with("6dfe") && exact[0].starts_with(&hex),
        "told apart by their bytes: {exact:?}"
    );

    // A relabel reads no attributes: its hard-link and device counts are unknown, null.
    let r = document(
        json_cmd(&[
            "relabel",
            "--context",
            "system_u:object_r:container_file_t:s0:c1,c2",
            "--ignore-unsupported",
            "--output",
            "json",
        ])
        .arg(&vol),
        0,
        "report",
    );
    assert_eq!(r["hard_linked"], Value::Null);
    assert_eq!(r["fs_group"], Value::Null, "absent values are null");

    // Refusals, each one document.
    let missing = fs.path().join("missing");
    document(
        json_cmd(&["apply", "--fs-group", "2000", "--output", "json"]).arg(&missing),
        2,
        "refusal",
    );
    document(
        json_cmd(&["apply", "--fs-group", "abc", "--output", "json"]).arg(&vol),
        2,
        "refusal",
    );
    document(
        json_cmd(&["relabel", "--context", "not a label", "--output", "json"]).arg(&vol),
        2,
        "refusal",
    );
}

/// `plan`, `apply --pod` (a plan that leaves volsec nothing to do, and one that cannot be
/// made: before, nothing was printed on stdout) and `mount-option`.
#[test]
fn plans_and_their_refusals() {
    let pod = fixture("pods/csi-inline.json");
    let pod = pod.to_str().unwrap();
    document(
        &mut json_cmd(&[
            "plan", "--pod", pod, "--volume", "scratch", "--output", "json",
        ]),
        0,
        "plan",
    );
    document(
        &mut json_cmd(&["plan", "--pod", pod, "--volume", "nope", "--output", "json"]),
        2,
        "refusal",
    );
    let dir = tempfile::tempdir().unwrap();
    let d = document(
        json_cmd(&[
            "apply", "--pod", pod, "--volume", "token", "--output", "json",
        ])
        .arg(dir.path()),
        0,
        "report",
    );
    assert_eq!(d["outcome"], "nothing_to_do");
    document(
        json_cmd(&[
            "apply", "--pod", pod, "--volume", "nope", "--output", "json",
        ])
        .arg(dir.path()),
        2,
        "refusal",
    );
    document(
        &mut json_cmd(&["mount-option", "--level", "s0:c1,c2", "--output", "json"]),
        0,
        "mount-option",
    );
    document(
        &mut json_cmd(&["mount-option", "--level", "bogus level", "--output", "json"]),
        2,
        "refusal",
    );
}

/// A `volsec serve` on a temporary socket, killed when dropped.
struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    fn start(allowed_root: &Path) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let child = volsec()
            .args(["serve", "--metrics-listen", "none", "--socket"])
            .arg(dir.path().join("volsec.sock"))
            .arg("--allowed-root")
            .arg(allowed_root)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn volsec serve");
        let agent = Agent { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !agent.socket().exists() {
            assert!(Instant::now() < deadline, "the agent did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("volsec.sock")
    }

    fn client(&self, args: &[&str]) -> Command {
        let mut cmd = volsec();
        cmd.arg("client")
            .arg("--socket")
            .arg(self.socket())
            .args(["--output", "json"])
            .args(args);
        cmd
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `client prepare` is `apply`'s document with the job's id; `list`, `cancel` and `plan`
/// their own; the agent's refusal and an unreachable agent are refusal documents.
#[test]
fn client_documents_and_their_refusals() {
    let fs = Mounted::tmpfs();
    let vol = fs.path().join("v");
    std::fs::create_dir_all(vol.join("d")).unwrap();
    std::fs::write(vol.join("d/f"), "f").unwrap();
    let agent = Agent::start(fs.path());
    let d = document(
        agent.client(&["prepare", "--fs-group", "2000"]).arg(&vol),
        0,
        "client-prepare",
    );
    assert!(d["job_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(d["outcome"], "complete");
    assert_eq!(d["hard_linked"], 0);
    document(&mut agent.client(&["list"]), 0, "client-list");
    let pod = fixture("pods/csi-inline.json");
    document(
        agent
            .client(&["plan", "--volume", "scratch", "--pod"])
            .arg(&pod),
        0,
        "plan",
    );
    // Outside the allowed root: the agent refuses the call.
    document(
        &mut agent.client(&["prepare", "--fs-group", "2000", "/etc"]),
        2,
        "refusal",
    );
    document(
        &mut agent.client(&["cancel", "job-that-does-not-exist"]),
        2,
        "refusal",
    );
    let mut cmd = volsec();
    cmd.args([
        "client",
        "--socket",
        "/nonexistent/volsec.sock",
        "--output",
        "json",
        "list",
    ]);
    document(&mut cmd, 2, "refusal");
}

/// Every saved benchmark result still matches the results schema, the runs written before a
/// field existed included (they load and compare, so the schema admits them).
#[test]
fn saved_bench_results_match_their_schema() {
    let validator = schema("bench-results");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked > 0, "no saved results in {}", dir.display());
}
