//! `volsec bench run` end to end on small trees, then `compare` of a run with itself.

use crate::common::*;
use volsec_bench::results::Results;

#[test]
fn a_small_run_measures_every_scenario_and_writes_json_and_plot() {
    let fs = Mounted::tmpfs();
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("run.json");
    let svg = out_dir.path().join("scaling.svg");
    let out = volsec()
        .args([
            "bench",
            "run",
            "--quiet",
            "--shapes",
            "kubelet,deep:1500",
            "--sizes",
            "600,1200",
        ])
        .args([
            "--repetitions",
            "2",
            "--threads",
            "1,2",
            "--with-chgrp",
            "--scratch",
        ])
        .arg(fs.path())
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("against the baselines"), "{stdout}");

    let r = Results::load(&json).unwrap();
    assert_eq!(
        r.machine.filesystem,
        format!("tmpfs ({})", fs.path().display())
    );
    // 3 trees x (6 scenarios x 2 thread counts + 7 baseline rows).
    assert_eq!(
        r.rows.len(),
        3 * (6 * 2 + 7),
        "{:#?}",
        r.rows.iter().map(|r| &r.key).collect::<Vec<_>>()
    );
    for row in &r.rows {
        assert_eq!(row.samples_s.len(), 2, "{}", row.key);
        assert!(
            row.median_s > 0.0 && row.min_s <= row.median_s && row.median_s <= row.max_s,
            "{}",
            row.key
        );
        if row.is_volsec() {
            let rss = row.peak_rss_kib.expect("volsec rows carry peak RSS");
            assert!(rss > 0 && rss < 512 * 1024, "{}: {rss} KiB", row.key);
        }
        if !row.is_volsec() && row.scenario == "fused-all" {
            let from = row.derived_from.as_deref().unwrap_or_default();
            assert!(
                from.contains("ownership-all/kubelet-serial")
                    && from.contains("relabel-all/go-selinux"),
                "{}: {from}",
                row.key
            );
        }
        if row.is_volsec() && row.scenario.ends_with("-all") {
            assert_eq!(
                row.changed,
                Some(row.inodes),
                "{}: every inode changes",
                row.key
            );
        }
    }
    assert!(r
        .rows
        .iter()
        .any(|row| row.shape == "deep" && row.inodes == 1500));
    assert!(!r.ratios.is_empty());
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("against threads"));
    assert!(
        fs.path().read_dir().unwrap().next().is_none(),
        "the trees are removed afterwards"
    );

    let same = volsec()
        .args(["bench", "compare"])
        .arg(&json)
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );
}

#[test]
fn bad_arguments_are_refused_in_one_sentence() {
    let out = volsec()
        .args(["bench", "run", "--shapes", "forest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown tree shape \"forest\""));
    let out = volsec()
        .args(["bench", "run", "--sizes", "5", "--scratch", "/tmp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tree size 5 inodes is out of range"));
}

#[test]
fn the_image_size_sets_the_journal_and_is_recorded() {
    require_root();
    let r = one_small_tree(&["--scenarios", "ownership-all", "--image-size", "2G"]);
    assert_eq!(
        r.machine.filesystem,
        "ext4 (sparse 2 GiB image in /dev/shm, 64 MiB journal, loop-mounted, RAM-backed)"
    );
    for (args, says) in [
        (
            &["--image-size", "512M"][..],
            "--image-size 512 MiB is below the 1025 MiB minimum for 600 inodes",
        ),
        (&["--image-size", "2"], "\"2\" is not a size: give G or M"),
        (
            &["--image-size", "2G", "--fs", "tmpfs"],
            "--image-size sizes an ext4 or xfs image",
        ),
        (
            &["--image-size", "2G", "--scratch", "/tmp"],
            "cannot be used with",
        ),
    ] {
        let out = volsec()
            .args(["bench", "run", "--quiet", "--sizes", "600"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn chgrp_runs_only_when_asked_for() {
    let fs = Mounted::tmpfs();
    let scratch = fs.path().to_str().unwrap();
    let r = one_small_tree(&["--scenarios", "ownership-all", "--scratch", scratch]);
    let implementations: Vec<&str> = r.rows.iter().map(|r| r.implementation.as_str()).collect();
    assert_eq!(implementations, ["volsec", "kubelet-serial"]);
}

#[test]
fn rchm_runs_only_when_asked_for_and_its_absence_is_said() {
    let fs = Mounted::tmpfs();
    let scratch = fs.path().to_str().unwrap();
    let no_tools = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("run.json");
    let out = volsec()
        .env("PATH", no_tools.path())
        .args([
            "bench", "run", "--quiet", "--shapes", "kubelet", "--sizes", "600",
        ])
        .args(["--repetitions", "1", "--with-rchm", "--scratch", scratch])
        .args(["--scenarios", "ownership-all,ownership-none", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("rchm is not on PATH").count(),
        1,
        "said once, even with --quiet: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("**Warning:** --with-rchm: rchm is not on PATH"),
        "{stdout}"
    );
    let r = Results::load(&json).unwrap();
    assert!(r.warnings.iter().any(|w| w.contains("rchm is not on PATH")));
    assert!(r.settings.commands.is_empty());
    let implementations: Vec<&str> = r.rows.iter().map(|r| r.implementation.as_str()).collect();
    assert_eq!(
        implementations,
        ["volsec", "kubelet-serial", "volsec", "kubelet-serial"]
    );

    if volsec_bench::baseline::find_rchm().is_none() {
        eprintln!(
            "rchm is not on PATH (cargo install --locked rcp-tools-rchm): its rows were not \
             measured, only their absence"
        );
        return;
    }
    let r = one_small_tree(&[
        "--scenarios",
        "ownership-all,ownership-none",
        "--with-rchm",
        "--scratch",
        scratch,
    ]);
    let rows: Vec<(&str, &str)> = r
        .rows
        .iter()
        .map(|r| (r.scenario.as_str(), r.implementation.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("ownership-all", "volsec"),
            ("ownership-all", "kubelet-serial"),
            ("ownership-all", "rchm"),
            ("ownership-all", "rchm-adaptive"),
            ("ownership-none", "volsec"),
            ("ownership-none", "kubelet-serial"),
            ("ownership-none", "rchm"),
            ("ownership-none", "rchm-adaptive"),
        ]
    );
    for row in r
        .rows
        .iter()
        .filter(|r| r.implementation.starts_with("rchm"))
    {
        let expected = if row.scenario == "ownership-all" {
            row.inodes
        } else {
            0
        };
        assert_eq!(row.changed, Some(expected), "{}", row.key);
    }
    assert!(
        !r.warnings.iter().any(|w| w.contains("rchm")),
        "{:?}",
        r.warnings
    );
    assert!(
        r.settings.commands["rchm-adaptive"].contains("--auto-meta-throttle"),
        "{:?}",
        r.settings.commands
    );
}

#[test]
fn a_fresh_xfs_image_is_made_on_request() {
    require_root();
    assert!(
        std::process::Command::new("mkfs.xfs")
            .arg("-V")
            .output()
            .is_ok(),
        "mkfs.xfs is missing: install xfsprogs (.ci/run does) to test `--fs xfs`"
    );
    let r = one_small_tree(&["--fs", "xfs", "--scenarios", "ownership-all,relabel-all"]);
    assert!(
        r.machine
            .filesystem
            .starts_with("xfs (sparse 128 GiB image in /dev/shm, 64 MiB log, loop-mounted"),
        "{}",
        r.machine.filesystem
    );
    assert!(r
        .rows
        .iter()
        .filter(|row| row.is_volsec())
        .all(|row| row.changed == Some(row.inodes)));
}

/// `volsec bench run` on one 600-inode `kubelet` tree, one repetition, with `args`; its
/// JSON results.
fn one_small_tree(args: &[&str]) -> Results {
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("run.json");
    succeeds(
        volsec()
            .args([
                "bench", "run", "--quiet", "--shapes", "kubelet", "--sizes", "600",
            ])
            .args(["--repetitions", "1"])
            .args(args)
            .arg("--json")
            .arg(&json),
    );
    Results::load(&json).unwrap()
}
