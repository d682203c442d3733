//! `volsec apply --owner` as a chart's volume-permissions init container runs it: a uid-0
//! process with only CAP_CHOWN (setpriv drops every other capability from all sets), on
//! real tmpfs and ext4 trees; the refusals and stops of a process that cannot write; and
//! `--dry-run --list`.

use crate::common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// `volsec apply ARGS... PATH` as uid 0 with only CAP_CHOWN (effective, permitted,
/// inheritable, ambient and bounding), as `capabilities: {drop: [ALL], add: [CHOWN]}`.
fn chown_only(args: &[&str], path: &Path) -> std::process::Output {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--inh-caps=-all,+chown",
        "--ambient-caps=-all,+chown",
        "--bounding-set=-all,+chown",
        "--",
    ])
    .arg(env!("CARGO_BIN_EXE_volsec"))
    .arg("apply")
    .args(args)
    .arg(path);
    run_with_timeout(cmd)
}

fn uid_gid_mode(path: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// A chart's volume after a first start: the root and most entries root's (what the
/// image wrote), a few of another uid, lost+found as mkfs leaves it.
fn chart_volume(vol: &Path) {
    mkdir(vol, 0o755);
    mkdir(&vol.join("lost+found"), 0o700);
    mkdir(&vol.join("data/sub"), 0o755);
    mkdir(&vol.join("data"), 0o755);
    write_file(&vol.join("data/f"), 0o644);
    write_file(&vol.join("data/sub/g"), 0o600);
    write_file(&vol.join("data/exe"), 0o4755);
    write_file(&vol.join("data/other"), 0o644);
    std::os::unix::fs::lchown(vol.join("data/other"), Some(7), Some(7)).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", vol.join("data/link")).unwrap();
}

fn owner_chown_only_on(fs: Mounted) {
    let vol = fs.subdir("vol");
    chart_volume(&vol);
    let args = [
        "--owner",
        "1001",
        "--fs-group",
        "1001",
        "--change-policy",
        "OnRootMismatch",
        "--exclude",
        "lost+found",
        "--output",
        "json",
    ];
    let out = chown_only(&args, &vol);
    let report = success_json(&out);
    // kubelet's modes wherever the process owned the entry; owner and group everywhere.
    assert_eq!(uid_gid_mode(&vol), (1001, 1001, 0o2775));
    assert_eq!(uid_gid_mode(&vol.join("data")), (1001, 1001, 0o2775));
    assert_eq!(uid_gid_mode(&vol.join("data/sub")), (1001, 1001, 0o2775));
    assert_eq!(uid_gid_mode(&vol.join("data/f")), (1001, 1001, 0o664));
    assert_eq!(uid_gid_mode(&vol.join("data/sub/g")), (1001, 1001, 0o660));
    assert_eq!(
        std::fs::symlink_metadata(vol.join("data/link"))
            .unwrap()
            .uid(),
        1001
    );
    assert_eq!(uid_gid_mode(Path::new("/etc/shadow")).0, 0);
    // Another owner's file: owner and group, its mode needs CAP_FOWNER.
    assert_eq!(uid_gid_mode(&vol.join("data/other")), (1001, 1001, 0o644));
    // setuid cleared by the chown of a file given away: only CAP_FOWNER puts it back.
    assert_eq!(uid_gid_mode(&vol.join("data/exe")), (1001, 1001, 0o775));
    // Excluded: untouched, not descended.
    assert_eq!(uid_gid_mode(&vol.join("lost+found")), (0, 0, 0o700));
    assert_eq!(report["outcome"], "complete", "{report}");
    assert_eq!(report["failed"], 0);
    assert_eq!(report["excluded"], 1);
    assert_eq!(report["owner"], 1001);
    let np = report["not_permitted"].as_array().unwrap();
    assert_eq!(np.len(), 2, "{report}");
    assert!(np
        .iter()
        .any(|n| n["what"] == "mode" && n["entries"] == 1 && n["capability"] == "CAP_FOWNER"));
    assert!(np
        .iter()
        .any(|n| n["what"] == "setid_given_away" && n["entries"] == 1));
    // Said once, in the text summary too.
    let before = all_paths(&vol)
        .iter()
        .map(|p| (p.clone(), ctime_ns(p)))
        .collect::<Vec<_>>();
    let out = chown_only(&args[..args.len() - 2], &vol);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("skipped: OnRootMismatch"), "{text}");
    // The restart is a root check: nothing written anywhere.
    let after = all_paths(&vol)
        .iter()
        .map(|p| (p.clone(), ctime_ns(p)))
        .collect::<Vec<_>>();
    assert_eq!(before, after);
}

#[test]
fn owner_with_only_cap_chown_on_tmpfs() {
    owner_chown_only_on(Mounted::tmpfs());
}

#[test]
fn owner_with_only_cap_chown_on_ext4() {
    owner_chown_only_on(Mounted::ext4(64));
}

#[test]
fn shortfalls_are_one_sentence_each() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    mkdir(&vol, 0o755);
    for i in 0..300 {
        let f = vol.join(format!("f{i}"));
        write_file(&f, 0o644);
        std::os::unix::fs::lchown(&f, Some(7), Some(7)).unwrap();
    }
    let out = chown_only(&["--owner", "1001", "--fs-group", "1001"], &vol);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("not permitted:").count(), 1, "{text}");
    assert!(
        text.contains("300 entries of other owners") && text.contains("CAP_FOWNER"),
        "{text}"
    );
    assert!(!text.contains("error:"), "{text}");
}

#[test]
fn without_cap_chown_nothing_is_tried() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    chart_volume(&vol);
    let before = all_paths(&vol)
        .iter()
        .map(|p| (p.clone(), ctime_ns(p)))
        .collect::<Vec<_>>();
    for setpriv in [
        vec!["--reuid", "65534", "--regid", "65534", "--clear-groups"],
        vec![
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-all",
        ],
    ] {
        let mut cmd = Command::new("setpriv");
        cmd.args(&setpriv)
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_volsec"))
            .args(["apply", "--fs-group", "2000"])
            .arg(&vol);
        let out = run_with_timeout(cmd);
        assert_eq!(out.status.code(), Some(2), "{setpriv:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("CAP_CHOWN") && err.contains("nothing was changed"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    let after = all_paths(&vol)
        .iter()
        .map(|p| (p.clone(), ctime_ns(p)))
        .collect::<Vec<_>>();
    assert_eq!(before, after);
}

#[test]
fn read_only_remount_stops_at_the_first_error() {
    for fs in [Mounted::tmpfs(), Mounted::ext4(64)] {
        let vol = fs.subdir("vol");
        mkdir(&vol, 0o755);
        for d in 0..20 {
            mkdir(&vol.join(format!("d{d}")), 0o755);
            for f in 0..100 {
                write_file(&vol.join(format!("d{d}/f{f}")), 0o644);
            }
        }
        let remount = |how: &str| {
            let st = Command::new("mount")
                .args(["-o", &format!("remount,{how}")])
                .arg(fs.path())
                .status()
                .unwrap();
            assert!(st.success());
        };
        remount("ro");
        let (code, report) = apply_json(&vol, &[]);
        remount("rw");
        assert_eq!(code, 1, "{report}");
        assert_eq!(report["outcome"], "partial");
        assert_eq!(report["stopped"]["errno"], "EROFS", "{report}");
        // Stopped at once: at most one failure per worker in flight, not 2,000.
        assert!(
            count(&report, "failed") <= report["threads"].as_u64().unwrap(),
            "{report}"
        );
        assert_eq!(report["errors"].as_array().unwrap().len(), 1);
        assert_eq!(gid_mode(&vol), (0, 0o755), "the root is never marked done");
        let out = volsec()
            .args(["apply", "--fs-group", "2000"])
            .arg(&vol)
            .output()
            .unwrap();
        assert_success(&out);
        assert_eq!(gid_mode(&vol), (2000, 0o2775));
    }
}

#[test]
fn dry_run_lists_what_would_change() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    mkdir(&vol, 0o2775);
    std::os::unix::fs::chown(&vol, None, Some(2000)).unwrap();
    write_file(&vol.join("a"), 0o644);
    write_file(&vol.join("right"), 0o664);
    std::os::unix::fs::chown(vol.join("right"), None, Some(2000)).unwrap();
    write_file(&vol.join("new\nline\x1b[31m"), 0o600);
    for name in ["a", "new\nline\x1b[31m"] {
        std::os::unix::fs::chown(vol.join(name), None, Some(0)).unwrap();
    }
    let before = all_paths(&vol)
        .iter()
        .map(|p| (p.clone(), ctime_ns(p)))
        .collect::<Vec<_>>();
    let list = |extra: &[&str]| {
        let out = volsec()
            .args(["apply", "--fs-group", "2000", "--dry-run", "--list"])
            .args(extra)
            .arg(&vol)
            .output()
            .unwrap();
        assert_success(&out);
        // The summary, text or JSON, on stderr: stdout is only the list.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("would change") || err.contains("\"dry_run\": true"),
            "{err}"
        );
        out.stdout
    };
    let text = String::from_utf8(list(&[])).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    let v = vol.display();
    assert_eq!(
        lines,
        [
            format!("gid 0 -> 2000, mode 0600 -> 0660\t{v}/new\\nline\\e[31m"),
            format!("gid 0 -> 2000, mode 0644 -> 0664\t{v}/a"),
        ],
    );
    let raw = list(&["-0"]);
    let records: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|r| !r.is_empty()).collect();
    assert_eq!(records.len(), 2);
    assert!(records.iter().any(|r| r.ends_with(b"/new\nline\x1b[31m")));
    let json = String::from_utf8(list(&["--output", "json"])).unwrap();
    let objects: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 2);
    let a = objects
        .iter()
        .find(|o| o["path"] == format!("{v}/a"))
        .unwrap();
    assert_eq!(a["gid"], serde_json::json!({"from": 0, "to": 2000}));
    assert_eq!(a["mode"], serde_json::json!({"from": "0644", "to": "0664"}));
    assert_eq!(a["uid"], serde_json::Value::Null);
    let after = all_paths(&vol)
        .iter()
        .map(|p| (p.clone(), ctime_ns(p)))
        .collect::<Vec<_>>();
    assert_eq!(before, after, "a dry run writes nothing");
    // --list needs --dry-run.
    let out = volsec()
        .args(["apply", "--fs-group", "2000", "--list"])
        .arg(&vol)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
