//! Nested mounts inside a volume: by default reported and skipped with everything under them
//! (the pass stays on the root's mount); `--cross-mounts` enters them. A read-only bind
//! mount entered with `--cross-mounts` fails with EROFS per entry: exit 1, the root left
//! unchanged.

use crate::common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Unmounts on drop (before the outer mount goes).
struct Nested(PathBuf);

impl Drop for Nested {
    fn drop(&mut self) {
        umount(&self.0);
    }
}

fn mount_cmd(args: &[&str], at: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .expect("mount");
    assert!(
        out.status.success(),
        "mount {args:?} {}: {}",
        at.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A volume on `outer` with a tmpfs mounted at `vol/data/nested`, holding a file and a dir.
fn volume_with_nested_tmpfs(outer: &Mounted) -> (PathBuf, PathBuf, Nested) {
    let vol = outer.subdir("vol");
    mkdir(&vol.join("data"), 0o755);
    write_file(&vol.join("data/mine"), 0o644);
    let nested = vol.join("data/nested");
    mount_tmpfs_at(&nested);
    let guard = Nested(nested.clone());
    mkdir(&nested, 0o755);
    mkdir(&nested.join("d"), 0o700);
    write_file(&nested.join("d/f"), 0o600);
    (vol, nested, guard)
}

fn nested_mount_is_reported_and_skipped(outer: Mounted) {
    let (vol, nested, _guard) = volume_with_nested_tmpfs(&outer);
    let nested_before: Vec<_> = all_paths(&nested)
        .into_iter()
        .map(|p| (gid_mode(&p), ctime_ns(&p), p))
        .collect();

    let (code, report) = apply_json(&vol, &[]);

    assert_eq!(code, 0, "a skipped mount is not a failure: {report}");
    assert_eq!(count(&report, "skipped_mounts"), 1, "{report}");
    assert_eq!(
        report["nested_mounts"],
        serde_json::json!([nested.display().to_string()]),
        "the mount point is reported by path: {report}"
    );
    for (gm, ct, p) in &nested_before {
        assert_eq!(
            (gid_mode(p), ctime_ns(p)),
            (*gm, *ct),
            "{} is on a nested mount and must be left alone",
            p.display()
        );
    }
    assert_eq!(
        gid_mode(&vol.join("data/mine")),
        (FS_GROUP, 0o664),
        "the volume is done"
    );
    assert_eq!(gid_mode(&vol), (FS_GROUP, 0o2775), "the root is done");

    // The text summary says so too.
    let out = run_with_timeout({
        let mut c = volsec();
        c.args(["apply", "--fs-group", "2000"]).arg(&vol);
        c
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&nested.display().to_string()) && text.contains("--cross-mounts"),
        "the summary names the skipped mount and the flag that enters it: {text}"
    );
}

fn cross_mounts_enters_nested_mounts(outer: Mounted) {
    let (vol, nested, _guard) = volume_with_nested_tmpfs(&outer);

    let (code, report) = apply_json(&vol, &["--cross-mounts"]);

    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "skipped_mounts"), 0, "{report}");
    assert_eq!(
        gid_mode(&nested),
        (FS_GROUP, 0o2775),
        "the mount point (the nested root)"
    );
    assert_eq!(gid_mode(&nested.join("d")), (FS_GROUP, 0o2770));
    assert_eq!(gid_mode(&nested.join("d/f")), (FS_GROUP, 0o660));
    assert_eq!(
        count(&report, "visited"),
        6,
        "vol, data, mine, nested, d, f: {report}"
    );
}

#[test]
fn nested_tmpfs_in_tmpfs_is_skipped() {
    nested_mount_is_reported_and_skipped(Mounted::tmpfs());
}

#[test]
fn nested_tmpfs_in_ext4_is_skipped() {
    nested_mount_is_reported_and_skipped(Mounted::ext4(32));
}

#[test]
fn nested_tmpfs_in_tmpfs_is_entered_with_cross_mounts() {
    cross_mounts_enters_nested_mounts(Mounted::tmpfs());
}

#[test]
fn nested_tmpfs_in_ext4_is_entered_with_cross_mounts() {
    cross_mounts_enters_nested_mounts(Mounted::ext4(32));
}

#[test]
fn bind_mount_of_the_same_filesystem_is_a_nested_mount() {
    // st_dev cannot tell a bind mount of the same filesystem apart; the mount id can.
    let outer = Mounted::tmpfs();
    let vol = outer.subdir("vol");
    let elsewhere = outer.subdir("elsewhere");
    write_file(&elsewhere.join("f"), 0o600);
    let at = vol.join("bound");
    mkdir(&at, 0o755);
    mount_cmd(&["--bind", &elsewhere.display().to_string()], &at);
    let _guard = Nested(at.clone());

    let (code, report) = apply_json(&vol, &[]);

    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "skipped_mounts"), 1, "{report}");
    assert_eq!(
        gid_mode(&elsewhere.join("f")),
        (0, 0o600),
        "the bound tree is left alone"
    );
}

#[test]
fn read_only_bind_mount_with_cross_mounts_fails_with_erofs() {
    let outer = Mounted::ext4(32);
    let vol = outer.subdir("vol");
    write_file(&vol.join("top"), 0o644);
    let sub = vol.join("sub");
    mkdir(&sub, 0o755);
    write_file(&sub.join("a"), 0o644);
    write_file(&sub.join("b"), 0o644);
    mount_cmd(&["--bind", &sub.display().to_string()], &sub);
    let _guard = Nested(sub.clone());
    mount_cmd(&["-o", "remount,ro,bind"], &sub);
    let root_before = (gid_mode(&vol), ctime_ns(&vol));

    // By default the read-only mount is just another nested mount: skipped.
    let (code, report) = apply_json(&vol, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "skipped_mounts"), 1, "{report}");
    mkdir(&vol, 0o755);
    std::os::unix::fs::lchown(&vol, None, Some(0)).unwrap();
    let root_before_cross = (gid_mode(&vol), ctime_ns(&vol));
    assert_eq!(root_before_cross.0, root_before.0);

    let (code, report) = apply_json(&vol, &["--cross-mounts"]);

    // The read-only mount fails every entry on it the same way: the pass stops at the
    // first EROFS (the mount point itself, opened before its entries), in one sentence.
    assert_eq!(code, 1, "entries that cannot be changed: exit 1: {report}");
    assert_eq!(report["stopped"]["errno"], "EROFS", "{report}");
    assert_eq!(
        report["stopped"]["path"],
        sub.display().to_string(),
        "{report}"
    );
    let errors = report["errors"].as_array().expect("errors list");
    assert_eq!(errors.len(), 1, "{report}");
    assert!(count(&report, "failed") <= 3, "{report}");
    assert_eq!(
        (gid_mode(&vol), ctime_ns(&vol)),
        root_before_cross,
        "the root must be left unchanged when anything below failed"
    );
}

#[test]
fn a_file_bind_mounted_into_the_volume_is_skipped() {
    let outer = Mounted::tmpfs();
    let vol = outer.subdir("vol");
    let host_file = outer.path().join("host-file");
    write_file(&host_file, 0o600);
    let at = vol.join("file");
    write_file(&at, 0o644);
    mount_cmd(&["--bind", &host_file.display().to_string()], &at);
    let _guard = Nested(at.clone());
    let before = (gid_mode(&host_file), ctime_ns(&host_file));

    let (code, report) = apply_json(&vol, &[]);

    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "skipped_mounts"), 1, "{report}");
    assert_eq!(
        (gid_mode(&host_file), ctime_ns(&host_file)),
        before,
        "a file bind-mounted into the volume is another filesystem's: left alone"
    );
}
