//! `volsec bench compare`: the regression gate CI relies on.

mod common;
use common::volsec;
use volsec::bench::results::{self, Machine, Results, Row, Settings, Statistic};

fn row(scenario: &str, implementation: &str, median_s: f64) -> Row {
    Row {
        key: results::key("kubelet", 203_001, scenario, implementation, 2, false),
        shape: "kubelet".into(),
        inodes: 203_001,
        scenario: scenario.into(),
        implementation: implementation.into(),
        threads: 2,
        cold: false,
        samples_s: vec![median_s; 3],
        median_s,
        min_s: median_s,
        max_s: median_s,
        inodes_per_s: 203_001.0 / median_s,
        peak_rss_kib: None,
        changed: None,
        derived_from: None,
    }
}

fn run_of(rows: Vec<Row>) -> Results {
    Results {
        format: results::FORMAT,
        volsec_version: "0.1.0".into(),
        started_unix: 0,
        machine: Machine {
            cpus: 2,
            cpu_model: "test".into(),
            kernel: "6.18".into(),
            memory_bytes: 1 << 30,
            filesystem: "ext4".into(),
            loadavg_start: "0 0 0".into(),
            loadavg_end: "0 0 0".into(),
        },
        settings: Settings {
            repetitions: 3,
            cold: false,
            threads: vec![2],
            seed: 1,
            rss_method: "not measured".into(),
        },
        rows,
        ratios: vec![],
        total_seconds: 1.0,
    }
}

#[test]
fn a_slowdown_beyond_the_threshold_is_a_regression() {
    let old = run_of(vec![row("ownership-all", "volsec", 0.400)]);
    let new = run_of(vec![row("ownership-all", "volsec", 0.460)]);
    let c = results::compare(&old, &new, Statistic::Median, 10.0, 0.002);
    assert_eq!(c.regressions().count(), 1);
    let c = results::compare(&old, &new, Statistic::Median, 20.0, 0.002);
    assert_eq!(c.regressions().count(), 0, "15% is within 20%");
}

#[test]
fn a_faster_run_a_slower_baseline_and_noise_are_not_regressions() {
    let old = run_of(vec![
        row("ownership-all", "volsec", 0.400),
        row("ownership-all", "kubelet-serial", 2.0),
        row("on-root-mismatch", "volsec", 0.000_050),
    ]);
    let new = run_of(vec![
        row("ownership-all", "volsec", 0.300),
        row("ownership-all", "kubelet-serial", 3.0),
        row("on-root-mismatch", "volsec", 0.000_090),
    ]);
    let c = results::compare(&old, &new, Statistic::Median, 10.0, 0.002);
    assert_eq!(c.regressions().count(), 0, "{c:?}");
    assert!(
        c.rows.iter().any(|r| !r.gated),
        "baselines are shown but not gated"
    );
}

#[test]
fn the_min_statistic_ignores_a_disturbed_median() {
    let old = run_of(vec![row("ownership-all", "volsec", 0.400)]);
    let mut new = run_of(vec![row("ownership-all", "volsec", 0.600)]);
    new.rows[0].min_s = 0.405;
    assert_eq!(
        results::compare(&old, &new, Statistic::Median, 10.0, 0.002)
            .regressions()
            .count(),
        1
    );
    assert_eq!(
        results::compare(&old, &new, Statistic::Min, 10.0, 0.002)
            .regressions()
            .count(),
        0
    );
}

#[test]
fn missing_and_new_rows_are_reported() {
    let old = run_of(vec![
        row("ownership-all", "volsec", 0.4),
        row("relabel-all", "volsec", 0.5),
    ]);
    let new = run_of(vec![
        row("ownership-all", "volsec", 0.4),
        row("fused-all", "volsec", 0.6),
    ]);
    let c = results::compare(&old, &new, Statistic::Median, 10.0, 0.002);
    assert_eq!(c.missing, vec![old.rows[1].key.clone()]);
    assert_eq!(c.added, vec![new.rows[1].key.clone()]);
}

#[test]
fn the_command_exits_1_on_a_regression_and_0_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.json");
    let new = dir.path().join("new.json");
    run_of(vec![row("ownership-all", "volsec", 0.400)])
        .save(&old)
        .unwrap();
    run_of(vec![row("ownership-all", "volsec", 0.500)])
        .save(&new)
        .unwrap();

    let out = volsec()
        .args(["bench", "compare"])
        .arg(&old)
        .arg(&new)
        .args(["--max-regression", "10%"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(
        table.contains("REGRESSION") && table.contains("+25.0%"),
        "{table}"
    );

    let out = volsec()
        .args(["bench", "compare"])
        .arg(&old)
        .arg(&new)
        .args(["--max-regression", "30%"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = volsec()
        .args(["bench", "compare"])
        .arg(&old)
        .arg(&old)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "a run compared with itself");
}

#[test]
fn an_unreadable_result_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let out = volsec()
        .args(["bench", "compare"])
        .arg(&bad)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("not a volsec bench result"),
        "{err}"
    );
}
