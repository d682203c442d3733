//! Running the `volsec` binary from a test: never longer than [`TIMEOUT`], and the JSON
//! report of `volsec apply` parsed, with the exit code and both streams in every failure.

use super::volsec;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The fsGroup [`apply_json`] passes.
pub const FS_GROUP: u32 = 2000;

/// Far beyond what any test pass takes; only a pass that blocks reaches it.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `cmd`, killing it and failing the test if it takes longer than [`TIMEOUT`].
pub fn run_with_timeout(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn volsec");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait for volsec"),
        Err(_) => {
            // SAFETY: plain kill(2) of the child this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{cmd:?} did not finish in {TIMEOUT:?}: something blocked (an opened FIFO?)");
        }
    }
}

/// Runs `cmd` to the end and fails the test, with the command and its stderr, unless it
/// succeeded.
pub fn succeeds(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn the command");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The command `volsec apply --fs-group 2000 --output json EXTRA... PATH`, not yet started.
pub fn apply_json_command(path: &Path, extra: &[&str]) -> Command {
    let mut cmd = volsec();
    cmd.args([
        "apply",
        "--fs-group",
        &FS_GROUP.to_string(),
        "--output",
        "json",
    ])
    .args(extra)
    .arg(path);
    cmd
}

/// `volsec apply --fs-group 2000 --output json EXTRA... PATH`: exit code and parsed report.
pub fn apply_json(path: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    apply_json_env(path, extra, &[])
}

/// [`apply_json`] with `env` added to volsec's environment.
pub fn apply_json_env(
    path: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (i32, serde_json::Value) {
    let mut cmd = apply_json_command(path, extra);
    cmd.envs(env.iter().copied());
    let out = run_with_timeout(cmd);
    let code = out.status.code().expect("volsec exited, not killed");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "volsec printed no JSON report ({e}); exit {code}; stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

/// The count `field` of a report; fails if it is missing or not a number.
pub fn count(report: &serde_json::Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("report field {field:?} missing or not a count: {report}"))
}

/// Fails the test, showing volsec's stderr, unless it exited 0.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`assert_success`], then the JSON volsec printed on stdout.
pub fn success_json(out: &Output) -> serde_json::Value {
    assert_success(out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The job of `volsec apply --fs-group`: ownership `fs_group` (none: no ownership part)
/// read-write, change policy `policy`, no label.
pub fn fs_group_job(
    fs_group: Option<u32>,
    policy: volsec_core::ownership::ChangePolicy,
) -> volsec_core::prepare::Job {
    volsec_core::prepare::Job {
        ownership: fs_group.map(|fs_group| volsec_core::ownership::Ownership {
            fs_group,
            read_only: false,
            owner: None,
        }),
        change_policy: policy,
        ..volsec_core::prepare::Job::default()
    }
}

/// One pass of the library in-process, as `volsec apply --fs-group` runs it
/// ([`fs_group_job`]): default options, up to 100 errors listed, never cancelled. No process
/// start: tests that race a pass many times use it.
pub fn prepare_fs_group(
    dir: &Path,
    fs_group: Option<u32>,
    policy: volsec_core::ownership::ChangePolicy,
) -> Result<volsec_core::prepare::Report, volsec_core::prepare::PrepareError> {
    use volsec_core::prepare::{prepare, Options};
    let job = fs_group_job(fs_group, policy);
    let progress = volsec_core::walk::Progress::new(100);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    prepare(dir, &job, &Options::default(), &progress, &cancel)
}

/// `volsec serve` on `socket`, volumes allowed below `allowed_root`, no metrics endpoint,
/// stdout discarded: add flags, `RUST_LOG` and stderr as the test needs, then spawn.
pub fn serve(socket: &Path, allowed_root: &Path) -> Command {
    let mut c = volsec();
    c.arg("serve")
        .arg("--socket")
        .arg(socket)
        .arg("--allowed-root")
        .arg(allowed_root)
        .args(["--metrics-listen", "none"])
        .stdout(Stdio::null());
    c
}
