//! `volsec relabel` and the fused `volsec apply` on real filesystems: tmpfs and
//! loop-mounted ext4 store `security.selinux` even without a loaded policy, so the labels
//! written are read back exactly as the kernel stores them.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const LABEL: &str = "system_u:object_r:container_file_t:s0:c123,c456";
const OTHER: &str = "system_u:object_r:user_home_t:s0";

/// The raw `security.selinux` value of `path` (not following a symlink), `None` if unset.
fn raw_label(path: &Path) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    match rustix::fs::lgetxattr(path, "security.selinux", &mut buf) {
        Ok(len) => Some(buf[..len].to_vec()),
        Err(rustix::io::Errno::NODATA) => None,
        Err(e) => panic!("{}: lgetxattr: {e}", path.display()),
    }
}

fn set_raw_label(path: &Path, value: &[u8]) {
    rustix::fs::lsetxattr(
        path,
        "security.selinux",
        value,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap_or_else(|e| panic!("{}: lsetxattr: {e}", path.display()));
}

/// A relabel the way go-selinux's `Chcon` does it: one path-based walk, `lsetxattr` on
/// every path, the value without a trailing NUL.
fn reference_relabel(root: &Path, label: &str) {
    for path in all_paths(root) {
        set_raw_label(&path, label.as_bytes());
    }
}

/// Directories, files of several kinds, symlinks (to a file, a directory, nowhere) and a
/// FIFO, some already carrying another label.
fn build_tree(vol: &Path) {
    mkdir(&vol.join("a/b/c"), 0o755);
    mkdir(&vol.join("empty"), 0o700);
    for (i, dir) in ["", "a", "a/b", "a/b/c"].iter().enumerate() {
        for j in 0..5 {
            write_file(&vol.join(dir).join(format!("f{i}{j}")), 0o644);
        }
    }
    std::os::unix::fs::symlink("f00", vol.join("link-file")).unwrap();
    std::os::unix::fs::symlink("a/b", vol.join("a/link-dir")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", vol.join("dangling")).unwrap();
    mkfifo(&vol.join("a/fifo"), 0o644);
    set_raw_label(&vol.join("a/f10"), OTHER.as_bytes());
    set_raw_label(
        &vol.join("a/b"),
        b"system_u:object_r:container_file_t:s0:c1,c2\0",
    );
}

fn relative_labels(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    all_paths(root)
        .into_iter()
        .map(|p| {
            let label = raw_label(&p);
            (p.strip_prefix(root).unwrap().to_path_buf(), label)
        })
        .collect()
}

fn relabel(vol: &Path, extra: &[&str]) -> serde_json::Value {
    let out = volsec()
        .args(["relabel", "--output", "json"])
        .args(extra)
        .arg(vol)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "volsec relabel {}: {}",
        vol.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

fn same_labels_as_the_reference(fs: &Mounted) {
    let ours = fs.subdir("ours");
    let theirs = fs.subdir("theirs");
    build_tree(&ours);
    build_tree(&theirs);
    relabel(&ours, &["--context", LABEL]);
    reference_relabel(&theirs, LABEL);
    let ours = relative_labels(&ours);
    assert_eq!(ours, relative_labels(&theirs));
    assert!(ours
        .iter()
        .all(|(_, l)| l.as_deref() == Some(LABEL.as_bytes())));
}

#[test]
fn labels_are_those_of_a_reference_relabel_on_tmpfs() {
    same_labels_as_the_reference(&Mounted::tmpfs());
}

#[test]
fn labels_are_those_of_a_reference_relabel_on_ext4() {
    same_labels_as_the_reference(&Mounted::ext4(64));
}

#[test]
fn level_is_completed_and_written_canonically() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    build_tree(&vol);
    let report = relabel(
        &vol,
        &[
            "--context",
            "system_u:object_r:container_file_t:s0:c3,c1,c2",
        ],
    );
    assert_eq!(
        report["selinux_label"],
        "system_u:object_r:container_file_t:s0:c1.c3"
    );
    for path in all_paths(&vol) {
        assert_eq!(
            raw_label(&path).as_deref(),
            Some(&b"system_u:object_r:container_file_t:s0:c1.c3"[..]),
            "{}",
            path.display()
        );
    }
}

#[test]
fn a_second_pass_writes_nothing() {
    let fs = Mounted::ext4(64);
    let vol = fs.subdir("vol");
    build_tree(&vol);
    let first = relabel(&vol, &["--context", LABEL]);
    let n = all_paths(&vol).len() as u64;
    assert_eq!(first["visited"], n);
    assert_eq!(first["changed"], n);
    // Equivalent spellings already on disk are right too: libselinux's trailing NUL, and
    // categories in another order.
    set_raw_label(&vol.join("a/f11"), format!("{LABEL}\0").as_bytes());
    set_raw_label(
        &vol.join("a/f12"),
        b"system_u:object_r:container_file_t:s0:c456,c123",
    );
    let before: Vec<(PathBuf, i128)> = all_paths(&vol)
        .into_iter()
        .map(|p| (p.clone(), ctime_ns(&p)))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = relabel(&vol, &["--context", LABEL]);
    assert_eq!(second["changed"], 0, "{second}");
    assert_eq!(second["unchanged"], n);
    for (path, ctime) in before {
        assert_eq!(ctime_ns(&path), ctime, "{} was written", path.display());
    }
}

#[test]
fn a_long_label_is_read_whole_and_not_rewritten() {
    // Every sixth category, no runs: a label of 850 bytes, longer than a first read and
    // short enough for the 1 KiB attribute block of a small ext4.
    let cats: Vec<String> = (0..1024).step_by(6).map(|c| format!("c{c}")).collect();
    let long = format!("system_u:object_r:container_file_t:s0:{}", cats.join(","));
    assert!(long.len() > 512 && long.len() < 900, "{}", long.len());
    let fs = Mounted::ext4(64);
    let vol = fs.subdir("vol");
    build_tree(&vol);
    let first = relabel(&vol, &["--context", &long]);
    let n = all_paths(&vol).len() as u64;
    assert_eq!(first["changed"], n, "{first}");
    assert_eq!(
        raw_label(&vol.join("a/f10")).as_deref(),
        Some(long.as_bytes())
    );
    let before: Vec<(PathBuf, i128)> = all_paths(&vol)
        .into_iter()
        .map(|p| (p.clone(), ctime_ns(&p)))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = relabel(&vol, &["--context", &long]);
    assert_eq!(second["changed"], 0, "{second}");
    for (path, ctime) in before {
        assert_eq!(ctime_ns(&path), ctime, "{} was written", path.display());
    }
    let out = volsec()
        .args([
            "apply",
            "--output",
            "json",
            "--change-policy",
            "OnRootMismatch",
        ])
        .args(["--selinux-context", &long])
        .arg(&vol)
        .output()
        .unwrap();
    let skipped: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(skipped["skipped_reason"], "OnRootMismatch", "{skipped}");
}

#[test]
fn symlinks_are_labelled_themselves_and_targets_are_untouched() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    let outside = fs.subdir("outside");
    write_file(&outside.join("secret"), 0o600);
    mkdir(&outside.join("dir"), 0o755);
    write_file(&outside.join("dir/inner"), 0o600);
    std::os::unix::fs::symlink(outside.join("secret"), vol.join("to-file")).unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), vol.join("to-dir")).unwrap();
    relabel(&vol, &["--context", LABEL]);
    for link in ["to-file", "to-dir"] {
        assert_eq!(
            raw_label(&vol.join(link)).as_deref(),
            Some(LABEL.as_bytes())
        );
    }
    for path in all_paths(&outside) {
        assert_eq!(raw_label(&path), None, "{} was labelled", path.display());
    }
}

/// A container swaps a directory of its volume for a symlink to a host directory, over and
/// over, while the relabel runs: nothing outside may ever get a label.
#[test]
fn symlink_swap_never_labels_outside() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    let outside = fs.subdir("outside");
    mkdir(&outside.join("etc/deep"), 0o755);
    for i in 0..20 {
        write_file(&outside.join(format!("etc/f{i}")), 0o600);
        write_file(&outside.join(format!("etc/deep/f{i}")), 0o600);
    }
    mkdir(&vol.join("d/sub"), 0o755);
    for i in 0..20 {
        write_file(&vol.join(format!("d/f{i}")), 0o644);
        write_file(&vol.join(format!("d/sub/f{i}")), 0o644);
    }
    std::os::unix::fs::symlink(outside.join("etc"), vol.join("s")).unwrap();

    let stop = AtomicBool::new(false);
    let swaps = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    vol.join("d"),
                    rustix::fs::CWD,
                    vol.join("s"),
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .expect("RENAME_EXCHANGE");
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        });
        for round in 0..60 {
            let label = format!("system_u:object_r:container_file_t:s0:c{round}");
            let out = volsec()
                .args(["relabel", "--quiet", "--context", &label])
                .arg(&vol)
                .output()
                .unwrap();
            // Entries vanish and reappear under the walk: exit 1 is allowed, a refusal is not.
            assert!(
                out.status.code() != Some(2),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for path in all_paths(&outside) {
                assert_eq!(
                    raw_label(&path),
                    None,
                    "round {round}: {} was labelled",
                    path.display()
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        swaps.load(std::sync::atomic::Ordering::Relaxed) > 60,
        "the swapper barely ran"
    );
}

#[test]
fn fused_apply_sets_group_mode_and_label_in_one_walk() {
    let fs = Mounted::ext4(64);
    let vol = fs.subdir("vol");
    build_tree(&vol);
    let n = all_paths(&vol).len() as u64;
    let (code, report) = apply_json(&vol, &["--selinux-context", LABEL]);
    assert_eq!(code, 0, "{report}");
    // One walk: every entry visited once, for both changes.
    assert_eq!(report["visited"], n, "{report}");
    assert_eq!(report["changed"], n, "{report}");
    assert_eq!(report["selinux_label"], LABEL);
    for path in all_paths(&vol) {
        assert_eq!(gid_mode(&path).0, 2000, "{}", path.display());
        assert_eq!(
            raw_label(&path).as_deref(),
            Some(LABEL.as_bytes()),
            "{}",
            path.display()
        );
    }
    assert_eq!(gid_mode(&vol.join("a/f10")), (2000, 0o664));
    assert_eq!(gid_mode(&vol.join("a/b")), (2000, 0o2775));

    let (_, again) = apply_json(&vol, &["--selinux-context", LABEL]);
    assert_eq!(again["changed"], 0, "{again}");
}

#[test]
fn a_filesystem_without_xattrs_gives_one_clear_message() {
    let (fs, _which) = mounted_without_xattrs();
    let vol = fs.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    write_file(&vol.join("f"), 0o644);
    let out = volsec()
        .args(["relabel", "--level", "s0:c1,c2"])
        .arg(&vol)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot store SELinux labels (EOPNOTSUPP)")
            && stderr.contains(&*vol.to_string_lossy()),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear message: {stderr}");

    let report = relabel(&vol, &["--level", "s0:c1,c2", "--ignore-unsupported"]);
    assert_eq!(report["labels_unsupported"], true, "{report}");
    assert_eq!(report["skipped_reason"], "LabelsUnsupported", "{report}");
}

/// A nested mount that stores no labels, entered with --cross-mounts: the root's
/// filesystem does, so the walk starts, and meets the other one below.
#[test]
fn a_nested_filesystem_without_labels_stops_the_pass_once_or_is_not_needed() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    build_tree(&vol);
    let inner = vol.join("a/ram");
    std::fs::create_dir(&inner).unwrap();
    succeeds(
        Command::new("mount")
            .args(["-t", "ramfs", "volsec-ramfs"])
            .arg(&inner),
    );
    for name in ["x", "y", "z"] {
        write_file(&inner.join(name), 0o644);
    }
    let root_before = raw_label(&vol);

    let out = volsec()
        .args([
            "relabel",
            "--cross-mounts",
            "--output",
            "json",
            "--context",
            LABEL,
        ])
        .arg(&vol)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(
        report["failed"], 1,
        "one failure, not one per entry: {report}"
    );
    let error = report["errors"][0].to_string();
    assert!(
        error.contains("cannot store SELinux labels") && error.contains("a/ram"),
        "{error}"
    );
    assert_eq!(
        raw_label(&vol),
        root_before,
        "the root is left for the next pass"
    );

    let report = relabel(
        &vol,
        &["--cross-mounts", "--ignore-unsupported", "--context", LABEL],
    );
    assert_eq!(report["outcome"], "complete", "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["labels_unsupported"], true, "{report}");
    assert_eq!(raw_label(&vol).as_deref(), Some(LABEL.as_bytes()));
    umount(&inner);
}

#[test]
fn a_file_bind_mounted_into_the_volume_is_skipped_not_relabelled() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    build_tree(&vol);
    let host = fs.subdir("host");
    write_file(&host.join("shadow"), 0o600);
    let over = vol.join("a/shadow");
    write_file(&over, 0o644);
    succeeds(
        Command::new("mount")
            .arg("--bind")
            .arg(host.join("shadow"))
            .arg(&over),
    );

    let report = relabel(&vol, &["--context", LABEL]);
    assert_eq!(report["outcome"], "complete", "{report}");
    let nested = report["nested_mounts"].to_string();
    assert!(
        nested.contains("a/shadow"),
        "reported as a nested mount: {report}"
    );
    assert_eq!(
        raw_label(&host.join("shadow")),
        None,
        "the host file kept no label"
    );
    assert_eq!(
        raw_label(&vol.join("a/f10")).as_deref(),
        Some(LABEL.as_bytes())
    );
    umount(&over);
}

#[test]
fn the_root_keeps_its_label_when_an_entry_below_fails() {
    // An immutable file refuses the write (EPERM, even to root): the pass goes on, reports
    // it, and leaves the root unlabelled, so the next OnRootMismatch pass walks again.
    let fs = Mounted::ext4(64);
    let vol = fs.subdir("vol");
    build_tree(&vol);
    let stuck = Immutable::set(&vol.join("a/b/f21"));
    let root_before = raw_label(&vol);

    let out = volsec()
        .args(["relabel", "--output", "json", "--context", LABEL])
        .arg(&vol)
        .output()
        .unwrap();
    drop(stuck);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["failed"], 1, "{report}");
    assert!(report["errors"].to_string().contains("f21"), "{report}");
    assert_eq!(
        raw_label(&vol),
        root_before,
        "the root is left for the next pass"
    );
    assert_eq!(
        raw_label(&vol.join("a/f10")).as_deref(),
        Some(LABEL.as_bytes())
    );

    let again = relabel(&vol, &["--context", LABEL]);
    assert_eq!(again["outcome"], "complete", "{again}");
    assert_eq!(raw_label(&vol).as_deref(), Some(LABEL.as_bytes()));
}

#[test]
fn mount_option_is_kubelets() {
    let out = volsec()
        .args([
            "mount-option",
            "--context",
            "system_u:object_r:container_file_t:s0:c456,c123",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "context=\"system_u:object_r:container_file_t:s0:c123,c456\"\n"
    );
    let out = volsec()
        .args(["mount-option", "--context", LABEL, "--output", "json"])
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["label"], LABEL);
    assert_eq!(answer["mount_option"], format!("context=\"{LABEL}\""));
    let out = volsec()
        .args(["mount-option", "--context", "system_u:object_r"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the type is missing"));
}

/// Directories where reading labels stops paying: the first entries all differ, so the
/// rest are written unread. Mixed directories (right entries after, before or among wrong
/// ones, symlinks among them) still end with every label right; symlink targets outside
/// are never labelled; a second pass over the result writes nothing.
#[test]
fn unread_labels_in_all_differ_directories_end_right() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    let outside = fs.subdir("outside");
    write_file(&outside.join("target"), 0o644);
    set_raw_label(&outside.join("target"), OTHER.as_bytes());
    // All differ: 200 files with no label, then symlinks out of the volume.
    mkdir(&vol.join("all"), 0o755);
    for i in 0..200 {
        write_file(&vol.join(format!("all/f{i:03}")), 0o644);
    }
    for i in 0..20 {
        std::os::unix::fs::symlink(outside.join("target"), vol.join(format!("all/l{i:02}")))
            .unwrap();
    }
    // Mixed: wrong first, then a long run already right, then wrong again.
    mkdir(&vol.join("mixed"), 0o755);
    for i in 0..300 {
        let p = vol.join(format!("mixed/f{i:03}"));
        write_file(&p, 0o644);
        let right = (50..250).contains(&i) || i % 7 == 0;
        set_raw_label(&p, if right { LABEL } else { OTHER }.as_bytes());
    }
    // Right first, then wrong: read all the way.
    mkdir(&vol.join("late"), 0o755);
    for i in 0..100 {
        let p = vol.join(format!("late/f{i:03}"));
        write_file(&p, 0o644);
        set_raw_label(&p, if i < 20 { LABEL } else { OTHER }.as_bytes());
    }
    let late_right_ctime: Vec<i128> = (0..20)
        .map(|i| ctime_ns(&vol.join(format!("late/f{i:03}"))))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));

    let first = relabel(&vol, &["--context", LABEL, "--threads", "2"]);
    assert_eq!(first["failed"], 0, "{first}");
    for (path, label) in relative_labels(&vol) {
        assert_eq!(
            label.as_deref(),
            Some(LABEL.as_bytes()),
            "{} has the wrong label",
            path.display()
        );
    }
    assert_eq!(
        raw_label(&outside.join("target")).as_deref(),
        Some(OTHER.as_bytes())
    );
    // A directory whose first entries were right was read, not rewritten.
    for (i, ctime) in late_right_ctime.into_iter().enumerate() {
        let p = vol.join(format!("late/f{i:03}"));
        assert_eq!(ctime_ns(&p), ctime, "{} was rewritten", p.display());
    }

    // The tree is right now: nothing is written, not even unread.
    let before: Vec<(PathBuf, i128)> = all_paths(&vol)
        .into_iter()
        .map(|p| (p.clone(), ctime_ns(&p)))
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = relabel(&vol, &["--context", LABEL, "--threads", "2"]);
    assert_eq!(second["changed"], 0, "{second}");
    for (path, ctime) in before {
        assert_eq!(ctime_ns(&path), ctime, "{} was written", path.display());
    }
}
