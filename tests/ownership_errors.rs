//! Exit codes, refusals and failures of `volsec apply`:
//! - 2 (refused, nothing changed, one sentence naming the path and the cause): a missing
//!   root, a root that is a file, a root that is a symlink, a symlink in a middle component of
//!   the root's path, bad arguments;
//! - 1 (partial): an entry that cannot be changed (an immutable file on ext4) is listed with
//!   its path and errno, the rest is done, and the root is left unchanged so that the next
//!   OnRootMismatch pass walks again;
//! - 0: entries deleted while the pass runs are counted as vanished, not as failures.
//!
//! Also the JSON report's fields, the OnRootMismatch skip as the binary reports it, and the
//! one-screen text summary.

use crate::common::*;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use volsec_core::prepare::PassOutcome;

fn apply(args: &[&str], path: &Path) -> Output {
    let mut cmd = volsec();
    cmd.arg("apply").args(args).arg(path);
    run_with_timeout(cmd)
}

fn assert_unchanged(what: &str, before: &Snapshot) {
    for (path, b) in before {
        let m = std::fs::symlink_metadata(path).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode(), ctime_ns(path)),
            *b,
            "{what}: {} changed",
            path.display()
        );
    }
}

/// A small volume with work to do everywhere: root 0755, a dir, files.
fn small_volume(fs: &Mounted) -> PathBuf {
    let vol = fs.subdir("vol");
    mkdir(&vol.join("dir"), 0o755);
    write_file(&vol.join("dir/file"), 0o644);
    write_file(&vol.join("top"), 0o600);
    vol
}

/// `dirs` directories `d0`, `d1`, ... of mode 0755 in `vol`, each with `files` empty files
/// `f0`, `f1`, ...: a pass long enough to interrupt.
fn fill(vol: &Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        mkdir(&vol.join(format!("d{d}")), 0o755);
        for f in 0..files {
            std::fs::write(vol.join(format!("d{d}/f{f}")), b"").unwrap();
        }
    }
}

/// A refusal: exit 2, one line on stderr naming `path` and containing `cause`, and no
/// report on stdout (with `--output json`, only the refusal document).
fn assert_refused(out: &Output, path: &Path, cause: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a refusal exits 2; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one sentence on stderr, got: {stderr:?}");
    assert!(
        lines[0].contains(&path.display().to_string()),
        "the message names the path {}: {stderr:?}",
        path.display()
    );
    assert!(
        lines[0].to_lowercase().contains(cause),
        "the message says the cause ({cause:?}): {stderr:?}"
    );
    if !out.stdout.is_empty() {
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("only a JSON refusal on stdout");
        assert_eq!(
            doc["outcome"], "refused",
            "no report for a refused pass: {doc}"
        );
        assert_eq!(
            doc["error"],
            lines[0].trim_start_matches("volsec: "),
            "{doc}"
        );
    }
}

// ----------------------------------------------------------------------------- exit 2

/// A refused root: the case's name, how its volume is laid out on a fresh tmpfs (returning
/// the path given to `volsec apply` and the tree that must stay unchanged, if any), and the
/// cause the message must give.
struct RefusedRoot {
    name: &'static str,
    setup: fn(&Mounted) -> (PathBuf, Option<PathBuf>),
    cause: &'static str,
}

const REFUSED_ROOTS: &[RefusedRoot] = &[
    RefusedRoot {
        name: "a missing root",
        setup: |fs| (fs.path().join("no/such/volume"), None),
        cause: "no such",
    },
    RefusedRoot {
        name: "a root that is a file",
        setup: |fs| {
            let file = fs.path().join("file");
            write_file(&file, 0o600);
            (file.clone(), Some(file))
        },
        cause: "not a directory",
    },
    RefusedRoot {
        name: "a root that is a symlink (its target is left alone)",
        setup: |fs| {
            let vol = small_volume(fs);
            let link = fs.path().join("link");
            std::os::unix::fs::symlink(&vol, &link).unwrap();
            (link, Some(vol))
        },
        cause: "symlink",
    },
    RefusedRoot {
        name: "a volume reached through a symlinked middle component",
        setup: |fs| {
            let real = fs.subdir("real");
            let vol = real.join("pods/vol");
            mkdir(&vol, 0o755);
            write_file(&vol.join("f"), 0o600);
            std::os::unix::fs::symlink(&real, fs.path().join("alias")).unwrap();
            (fs.path().join("alias/pods/vol"), Some(vol))
        },
        cause: "symlink",
    },
];

#[test]
fn bad_roots_are_refused_and_change_nothing() {
    for case in REFUSED_ROOTS {
        let fs = Mounted::tmpfs();
        let (path, watched) = (case.setup)(&fs);
        let before = watched.as_deref().map(snapshot);
        eprintln!("case: {}", case.name);
        let out = apply(&["--fs-group", "2000"], &path);
        assert_refused(&out, &path, case.cause);
        // With JSON output, the refusal is a document on stdout too.
        let out = apply(&["--fs-group", "2000", "--output", "json"], &path);
        assert_refused(&out, &path, case.cause);
        assert!(
            !out.stdout.is_empty(),
            "{}: a JSON refusal on stdout",
            case.name
        );
        if let Some(before) = &before {
            assert_unchanged(case.name, before);
        }
    }
}

#[test]
fn bad_arguments_are_refused_and_change_nothing() {
    let fs = Mounted::tmpfs();
    let vol = small_volume(&fs);
    let before = snapshot(&vol);
    for args in [
        &["--fs-group", "two-thousand"][..],
        &["--fs-group", "-5"][..],
        &["--fs-group", "2000", "--change-policy", "Sometimes"][..],
        &["--fs-group", "2000", "--threads", "many"][..],
        &[][..], // neither an fsGroup nor a label: nothing to do
    ] {
        let out = apply(args, &vol);
        assert_eq!(
            out.status.code(),
            Some(2),
            "volsec apply {args:?} must be refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "volsec apply {args:?} says why");
    }
    assert_unchanged("refused arguments", &before);
}

// ----------------------------------------------------------------------------- exit 1

#[test]
fn a_failing_entry_is_listed_and_the_root_is_left_unchanged() {
    let fs = Mounted::ext4(32);
    let vol = small_volume(&fs);
    let locked = vol.join("dir/locked");
    write_file(&locked, 0o644);
    let guard = Immutable::set(&locked);
    let root_before = (gid_mode(&vol), ctime_ns(&vol));

    let (code, report) = apply_json(&vol, &[]);

    assert_eq!(code, 1, "a partial failure exits 1: {report}");
    assert_eq!(count(&report, "failed"), 1, "{report}");
    assert_eq!(report["outcome"], "partial", "{report}");
    let errors = report["errors"].as_array().expect("errors is a list");
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["path"], locked.display().to_string(), "{report}");
    assert_eq!(errors[0]["errno"], "EPERM", "{report}");
    assert_eq!(
        (gid_mode(&vol), ctime_ns(&vol)),
        root_before,
        "the root must be left unchanged when anything below failed"
    );
    assert_eq!(gid_mode(&locked), (0, 0o644), "the immutable file itself");
    assert_eq!(
        gid_mode(&vol.join("dir/file")),
        (FS_GROUP, 0o664),
        "the rest is done"
    );
    assert_eq!(
        gid_mode(&vol.join("top")),
        (FS_GROUP, 0o660),
        "the rest is done"
    );

    // The text summary lists the failure with its path and errno too.
    let out = apply(&["--fs-group", "2000"], &vol);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains(&locked.display().to_string()) && l.contains("EPERM")),
        "the summary names the failed path and errno: {text}"
    );

    // OnRootMismatch walks again, since the root was not changed...
    let (code, report) = apply_json(&vol, &["--change-policy", "OnRootMismatch"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        report["skipped_reason"],
        serde_json::Value::Null,
        "{report}"
    );

    // ...and once the entry can be changed, the pass completes and the root is done last.
    drop(guard);
    let (code, report) = apply_json(&vol, &["--change-policy", "OnRootMismatch"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(gid_mode(&locked), (FS_GROUP, 0o664));
    assert_eq!(gid_mode(&vol), (FS_GROUP, 0o2775));
    let (code, report) = apply_json(&vol, &["--change-policy", "OnRootMismatch"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["skipped_reason"], "OnRootMismatch", "{report}");
}

#[test]
fn an_immutable_directory_fails_alone() {
    // An immutable directory can be read and walked but not changed: its children are done,
    // it is listed, and the root is left unchanged.
    let fs = Mounted::ext4(32);
    let vol = small_volume(&fs);
    let locked = vol.join("locked_dir");
    mkdir(&locked, 0o755);
    write_file(&locked.join("inside"), 0o600);
    let _guard = Immutable::set(&locked);
    let root_before = (gid_mode(&vol), ctime_ns(&vol));

    let (code, report) = apply_json(&vol, &[]);

    assert_eq!(code, 1, "{report}");
    assert_eq!(count(&report, "failed"), 1, "{report}");
    assert_eq!(
        report["errors"][0]["path"],
        locked.display().to_string(),
        "{report}"
    );
    assert_eq!(report["errors"][0]["errno"], "EPERM", "{report}");
    assert_eq!(
        gid_mode(&locked.join("inside")),
        (FS_GROUP, 0o660),
        "children are done"
    );
    assert_eq!(
        (gid_mode(&vol), ctime_ns(&vol)),
        root_before,
        "root unchanged"
    );
}

#[test]
fn failures_beyond_max_errors_are_counted() {
    let fs = Mounted::ext4(32);
    let vol = small_volume(&fs);
    let mut guards = Vec::new();
    for i in 0..7 {
        let p = vol.join(format!("locked{i}"));
        write_file(&p, 0o644);
        guards.push(Immutable::set(&p));
    }
    let (code, report) = apply_json(&vol, &["--max-errors", "3"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        count(&report, "failed"),
        7,
        "all failures are counted: {report}"
    );
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(3),
        "the list is capped at --max-errors: {report}"
    );
}

// ----------------------------------------------------------------------------- exit 0

#[test]
fn entries_deleted_during_the_pass_are_vanished_not_failed() {
    // A container deletes files while the pass runs: listed by getdents, gone by the time
    // they are stat'ed or changed. The library is driven in-process so the deleter can
    // start once the walk is under way. A race: retried until some deletion lands in the
    // window; every attempt must be a clean pass.
    use volsec_core::ownership::ChangePolicy;
    use volsec_core::prepare::{self, Options};
    use volsec_core::walk::Progress;
    const FILES: usize = 20_000;
    let mut vanished_seen = 0;
    for attempt in 0..10 {
        let fs = Mounted::tmpfs();
        let vol = fs.subdir("vol");
        for d in 0..20 {
            mkdir(&vol.join(format!("d{d}")), 0o755);
        }
        for i in 0..FILES {
            std::fs::write(vol.join(format!("d{}/f{i}", i % 20)), b"").unwrap();
        }
        // Deleted in reverse listing order, so that the deleter meets the walk.
        let mut victims: Vec<PathBuf> = Vec::new();
        for d in 0..20 {
            for e in std::fs::read_dir(vol.join(format!("d{d}"))).unwrap() {
                victims.push(e.unwrap().path());
            }
        }
        victims.reverse();
        let job = fs_group_job(Some(FS_GROUP), ChangePolicy::Always);
        let progress = Progress::new(100);
        let done = AtomicBool::new(false);
        let report = std::thread::scope(|s| {
            s.spawn(|| {
                while progress.tally().visited < 500 && !done.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                for v in &victims {
                    let _ = std::fs::remove_file(v);
                }
            });
            let r = prepare::prepare(
                &vol,
                &job,
                &Options::default(),
                &progress,
                &AtomicBool::new(false),
            );
            done.store(true, Ordering::Relaxed);
            r
        })
        .expect("the pass runs");
        let t = report.tally;
        assert_eq!(
            (t.failed, report.errors.len()),
            (0, 0),
            "attempt {attempt}: a deleted entry is not a failure: {:?}",
            report.errors
        );
        assert_eq!(report.outcome, PassOutcome::Complete, "attempt {attempt}");
        assert_eq!(
            gid_mode(&vol),
            (FS_GROUP, 0o2775),
            "attempt {attempt}: root done"
        );
        if t.vanished > 0 {
            vanished_seen = t.vanished;
            break;
        }
    }
    assert!(
        vanished_seen > 0,
        "in 10 attempts no deletion landed between listing and changing an entry"
    );
}

// ----------------------------------------------------------------------------- reports

#[test]
fn json_report_has_the_documented_fields() {
    let fs = Mounted::tmpfs();
    let vol = small_volume(&fs);
    let (code, report) = apply_json(&vol, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        count(&report, "visited"),
        4,
        "root, dir, dir/file, top: {report}"
    );
    assert_eq!(count(&report, "changed"), 4, "{report}");
    assert_eq!(count(&report, "failed"), 0, "{report}");
    assert_eq!(count(&report, "vanished"), 0, "{report}");
    assert!(report["elapsed_ms"].is_u64(), "elapsed_ms: {report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert!(
        report.as_object().unwrap().contains_key("skipped_reason"),
        "skipped_reason is present (null when not skipped): {report}"
    );
    assert_eq!(
        report["skipped_reason"],
        serde_json::Value::Null,
        "{report}"
    );
    assert_eq!(report["outcome"], "complete", "{report}");
    assert_eq!(report["fs_group"], 2000, "{report}");
}

#[test]
fn on_root_mismatch_skip_touches_nothing_below() {
    let fs = Mounted::tmpfs();
    let vol = small_volume(&fs);
    std::os::unix::fs::lchown(&vol, None, Some(FS_GROUP)).unwrap();
    mkdir(&vol, 0o2770);
    let before = snapshot(&vol);
    std::thread::sleep(Duration::from_millis(20));

    let (code, report) = apply_json(&vol, &["--change-policy", "OnRootMismatch"]);

    assert_eq!(code, 0, "{report}");
    assert_eq!(report["skipped_reason"], "OnRootMismatch", "{report}");
    assert_eq!(count(&report, "changed"), 0, "{report}");
    assert!(
        count(&report, "visited") <= 1,
        "only the root is looked at: {report}"
    );
    assert_unchanged("an OnRootMismatch skip", &before);
    // Always walks the same volume.
    let (code, report) = apply_json(&vol, &["--change-policy", "Always"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "changed"), 3, "dir, dir/file, top: {report}");
}

#[test]
fn text_summary_fits_one_screen() {
    let fs = Mounted::tmpfs();
    let vol = small_volume(&fs);
    let out = apply(&["--fs-group", "2000"], &vol);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().count() <= 24, "one screen: {text}");
    for word in [
        "visited",
        "changed",
        "unchanged",
        "failed",
        "mounts skipped",
        "inodes/s",
    ] {
        assert!(text.contains(word), "the summary mentions {word:?}: {text}");
    }
    assert!(
        out.stderr.is_empty(),
        "no progress bar or logs when stderr is not a terminal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `volsec ARGS` on a terminal (a pty from util-linux `script`) and returns what the
/// terminal showed.
fn on_a_terminal(args: &str) -> String {
    let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_volsec"));
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .output()
        .unwrap_or_else(|e| panic!("script (util-linux) runs volsec on a pty: {e}"));
    assert_eq!(out.status.code(), Some(0), "{cmd}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_terminal_shows_progress_unless_quiet() {
    let fs = Mounted::tmpfs();
    let vol = small_volume(&fs);
    let shown = on_a_terminal(&format!("apply --fs-group 2000 {}", vol.display()));
    // The bar's elapsed time and count, then the summary after it.
    assert!(shown.contains("00:00:0"), "a progress bar: {shown:?}");
    assert!(shown.contains("visited"), "{shown:?}");
    let quiet = on_a_terminal(&format!("apply --quiet --fs-group 2001 {}", vol.display()));
    assert!(!quiet.contains("00:00:0"), "no bar with --quiet: {quiet:?}");
    assert!(quiet.contains("visited"), "{quiet:?}");
}

#[test]
fn a_failing_entry_with_a_non_utf8_name_is_reported_in_json() {
    // Names are bytes, chosen by the container. A report must still come out (exit 1 and
    // JSON), not a crash of the serializer.
    use std::os::unix::ffi::OsStrExt;
    let fs = Mounted::ext4(32);
    let vol = small_volume(&fs);
    let name = std::ffi::OsStr::from_bytes(b"bad\xff\xfename");
    let locked = vol.join(name);
    write_file(&locked, 0o644);
    let _guard = Immutable::set(&locked);

    let out = apply(&["--fs-group", "2000", "--output", "json"], &vol);

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a partial failure exits 1; stdout: {stdout} stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the JSON report is printed");
    assert_eq!(count(&report, "failed"), 1, "{report}");
    let path = report["errors"][0]["path"].as_str().unwrap_or_default();
    assert!(
        path.contains("bad"),
        "the failed path is reported: {report}"
    );
}

#[test]
fn a_volume_with_a_non_utf8_root_path_gets_a_json_report() {
    use std::os::unix::ffi::OsStrExt;
    let fs = Mounted::tmpfs();
    let vol = fs.path().join(std::ffi::OsStr::from_bytes(b"pvc-\xff"));
    mkdir(&vol, 0o755);
    write_file(&vol.join("f"), 0o644);

    let out = apply(&["--fs-group", "2000", "--output", "json"], &vol);

    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the JSON report is printed");
    assert_eq!(count(&report, "changed"), 2, "{report}");
}

#[test]
fn a_cancelled_pass_leaves_the_root_unchanged() {
    use volsec_core::ownership::ChangePolicy;
    use volsec_core::prepare::{self, Options};
    use volsec_core::walk::Progress;
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    fill(&vol, 50, 200);
    let root_before = (gid_mode(&vol), ctime_ns(&vol));
    let job = fs_group_job(Some(FS_GROUP), ChangePolicy::Always);
    let progress = Progress::new(100);
    let cancel = AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            while progress.tally().visited < 1000 {
                std::hint::spin_loop();
            }
            cancel.store(true, Ordering::Relaxed);
        });
        prepare::prepare(&vol, &job, &Options::default(), &progress, &cancel)
    })
    .expect("the pass runs");
    assert_eq!(report.outcome, PassOutcome::Cancelled, "{report:?}");
    assert!(!report.succeeded(), "a cancelled pass did not succeed");
    assert_eq!(
        (gid_mode(&vol), ctime_ns(&vol)),
        root_before,
        "an interrupted pass leaves the root unchanged, so OnRootMismatch walks again"
    );
}

#[test]
fn a_killed_pass_leaves_the_root_unchanged() {
    // SIGKILL in the middle of a pass: the root is changed last, so it is still as it was.
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    fill(&vol, 100, 1000);
    let root_before = (gid_mode(&vol), ctime_ns(&vol));
    let mut child = volsec()
        .args(["apply", "--fs-group", "2000", "--quiet"])
        .arg(&vol)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has changed something, and before it has finished.
    let started = std::time::Instant::now();
    while gid_mode(&vol.join("d99/f999")).0 != FS_GROUP
        && (0..100).all(|d| gid_mode(&vol.join(format!("d{d}/f0"))).0 != FS_GROUP)
    {
        assert!(started.elapsed() < TIMEOUT, "the pass never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the pass finished before it could be killed; make the tree bigger"
    );
    assert_eq!(
        (gid_mode(&vol), ctime_ns(&vol)),
        root_before,
        "a killed pass leaves the root unchanged"
    );
    // And OnRootMismatch then walks the whole volume again.
    let (code, report) = apply_json(&vol, &["--change-policy", "OnRootMismatch"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["skipped_reason"],
        serde_json::Value::Null,
        "{report}"
    );
    assert_eq!(gid_mode(&vol.join("d50/f500")), (FS_GROUP, 0o664));
    assert_eq!(gid_mode(&vol), (FS_GROUP, 0o2775));
}
