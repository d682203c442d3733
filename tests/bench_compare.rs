//! `volsec bench compare`: the regression gate CI relies on.

use crate::common::volsec;
use volsec_bench::compare::{self, Basis, Gate, Statistic};
use volsec_bench::results::{self, Machine, Results, Row, Settings};

const SHAPES: [&str; 5] = ["kubelet", "dataset", "deep", "node-modules", "flat"];

fn row(shape: &str, scenario: &str, implementation: &str, samples_s: &[f64]) -> Row {
    let median_s = results::median(samples_s);
    Row {
        key: results::key(shape, 200_000, scenario, implementation, 2, false),
        shape: shape.into(),
        inodes: 200_000,
        scenario: scenario.into(),
        implementation: implementation.into(),
        threads: 2,
        cold: false,
        samples_s: samples_s.to_vec(),
        median_s,
        min_s: samples_s.iter().copied().fold(f64::INFINITY, f64::min),
        max_s: samples_s.iter().copied().fold(0.0, f64::max),
        inodes_per_s: 200_000.0 / median_s,
        peak_rss_kib: None,
        changed: None,
        derived_from: None,
        chosen: None,
    }
}

/// ownership-all on every shape: volsec taking `volsec[i]` and kubelet `kubelet` seconds
/// (three equal repetitions each).
fn ownership_all(volsec: [f64; 5], kubelet: f64) -> Vec<Row> {
    SHAPES
        .iter()
        .zip(volsec)
        .flat_map(|(shape, v)| {
            [
                row(shape, "ownership-all", "volsec", &[v; 3]),
                row(shape, "ownership-all", "kubelet-serial", &[kubelet; 3]),
            ]
        })
        .collect()
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
            commands: Default::default(),
        },
        rows,
        ratios: vec![],
        total_seconds: 1.0,
        warnings: vec![],
    }
}

#[test]
fn a_scenario_slower_beyond_the_threshold_is_a_regression() {
    let old = run_of(ownership_all([1.0; 5], 3.0));
    let new = run_of(ownership_all([1.12; 5], 3.0));
    let c = compare::compare(&old, &new, Gate::default());
    assert!(c.regressed(), "{c:?}");
    assert!(c.scenarios[0].regression && (c.scenarios[0].change_pct - 12.0).abs() < 0.01);
    let loose = Gate {
        max_regression_pct: 15.0,
        ..Gate::default()
    };
    assert!(
        !compare::compare(&old, &new, loose).regressed(),
        "12% is within 15%"
    );
}

#[test]
fn a_machine_slower_for_the_whole_run_is_not_a_regression() {
    // Everything, baselines included, 25% slower: the runner, not volsec.
    let old = run_of(ownership_all([1.0; 5], 3.0));
    let new = run_of(ownership_all([1.25; 5], 3.75));
    assert!(!compare::compare(&old, &new, Gate::default()).regressed());
    let absolute = Gate {
        basis: Basis::Absolute,
        ..Gate::default()
    };
    assert!(compare::compare(&old, &new, absolute).regressed());
}

#[test]
fn one_noisy_tree_does_not_fail_the_gate_but_one_much_slower_tree_does() {
    let old = run_of(ownership_all([1.0; 5], 3.0));
    let noisy = run_of(ownership_all([1.0, 1.0, 1.18, 1.0, 1.0], 3.0));
    let c = compare::compare(&old, &noisy, Gate::default());
    assert!(!c.regressed(), "one row +18%, the scenario +3.4%: {c:?}");

    let flat_broke = run_of(ownership_all([1.0, 1.0, 1.0, 1.0, 1.4], 3.0));
    let c = compare::compare(&old, &flat_broke, Gate::default());
    assert!(c.regressed());
    let broke: Vec<_> = c.rows.iter().filter(|r| r.regression).collect();
    assert_eq!(broke.len(), 1);
    assert!(broke[0].key.starts_with("flat/"), "{broke:?}");
}

#[test]
fn baselines_and_passes_under_the_noise_floor_are_not_gated() {
    let mut old = ownership_all([1.0; 5], 3.0);
    old.push(row(
        "kubelet",
        "on-root-mismatch",
        "volsec",
        &[0.000_050; 3],
    ));
    let mut new = ownership_all([1.0; 5], 6.0);
    new.push(row(
        "kubelet",
        "on-root-mismatch",
        "volsec",
        &[0.000_500; 3],
    ));
    let c = compare::compare(&run_of(old), &run_of(new), Gate::default());
    assert!(!c.regressed(), "{c:?}");
    let shown = |key: &str| c.rows.iter().find(|r| r.key.contains(key)).unwrap();
    assert!(!shown("kubelet-serial").gated);
    assert!(!shown("on-root-mismatch").gated);
}

#[test]
fn repetitions_are_paired_with_the_baseline_they_ran_beside() {
    // The second repetition of both was disturbed the same way: paired, nothing changed.
    let kubelet_tree = |volsec: [f64; 3], kubelet: [f64; 3]| {
        run_of(vec![
            row("kubelet", "ownership-all", "volsec", &volsec),
            row("kubelet", "ownership-all", "kubelet-serial", &kubelet),
        ])
    };
    let old = kubelet_tree([1.0, 1.0, 1.0], [3.0, 3.0, 3.0]);
    let new = kubelet_tree([1.0, 1.5, 1.5], [3.0, 4.5, 4.5]);
    let c = compare::compare(&old, &new, Gate::default());
    assert!(c.rows[0].change_pct.abs() < 1e-9, "{c:?}");
}

#[test]
fn the_min_statistic_ignores_a_disturbed_median() {
    let old = run_of(vec![row("kubelet", "ownership-all", "volsec", &[0.4; 3])]);
    let new = run_of(vec![row(
        "kubelet",
        "ownership-all",
        "volsec",
        &[0.405, 0.6, 0.6],
    )]);
    let gate = |statistic| Gate {
        statistic,
        ..Gate::default()
    };
    assert!(compare::compare(&old, &new, gate(Statistic::Median)).regressed());
    assert!(!compare::compare(&old, &new, gate(Statistic::Min)).regressed());
}

#[test]
fn missing_and_new_rows_are_reported() {
    let old = run_of(vec![
        row("kubelet", "ownership-all", "volsec", &[0.4; 3]),
        row("kubelet", "relabel-all", "volsec", &[0.5; 3]),
    ]);
    let new = run_of(vec![
        row("kubelet", "ownership-all", "volsec", &[0.4; 3]),
        row("kubelet", "fused-all", "volsec", &[0.6; 3]),
    ]);
    let c = compare::compare(&old, &new, Gate::default());
    assert_eq!(c.missing, vec![old.rows[1].key.clone()]);
    assert_eq!(c.added, vec![new.rows[1].key.clone()]);
}

#[test]
fn the_command_exits_1_on_a_regression_and_0_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.json");
    let new = dir.path().join("new.json");
    run_of(ownership_all([0.4; 5], 3.0)).save(&old).unwrap();
    run_of(ownership_all([0.5; 5], 3.0)).save(&new).unwrap();

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
        .args(["--max-regression", "30%", "--max-row-regression", "30%"])
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

#[test]
fn each_row_is_measured_against_the_baseline_of_its_own_scenario() {
    let tree = |none_kubelet: f64| {
        run_of(vec![
            row("kubelet", "ownership-all", "volsec", &[1.0; 3]),
            row("kubelet", "ownership-all", "kubelet-serial", &[3.0; 3]),
            row("kubelet", "ownership-none", "volsec", &[0.3; 3]),
            row(
                "kubelet",
                "ownership-none",
                "kubelet-serial",
                &[none_kubelet; 3],
            ),
            row("kubelet", "on-root-mismatch", "volsec", &[0.000_1; 3]),
            row(
                "kubelet",
                "on-root-mismatch",
                "kubelet-serial",
                &[0.000_002; 3],
            ),
        ])
    };
    let c = compare::compare(&tree(3.0), &tree(2.0), Gate::default());
    let none = c
        .rows
        .iter()
        .find(|r| r.key.contains("ownership-none/volsec"))
        .unwrap();
    assert_eq!(none.unit, "x kubelet-serial");
    assert!(
        (none.old - 0.1).abs() < 1e-9 && (none.new - 0.15).abs() < 1e-9,
        "{none:?}"
    );
    let skip = c
        .rows
        .iter()
        .find(|r| r.key.contains("on-root-mismatch/volsec"))
        .unwrap();
    assert_eq!(skip.unit, "s", "a baseline of microseconds is no yardstick");
}

/// A machine busier than its CPUs at the start is warned about and recorded; an
/// OnRootMismatch pass (under a millisecond) is shown by its times, not as "0.02x" or a
/// rate of hundreds of millions of inodes per second; a document written before these
/// fields existed still loads.
#[test]
fn busy_machines_are_warned_about_and_sub_millisecond_rows_shown_as_times() {
    assert!(results::busy_warning("3.50 2.00 1.00 3/200 999", 2)
        .is_some_and(|w| w.contains("3.50") && w.contains("(2)")));
    assert_eq!(results::busy_warning("1.99 9.00 9.00 1/1 1", 2), None);

    let mut run = run_of(
        ["kubelet"]
            .iter()
            .flat_map(|shape| {
                [
                    row(shape, "on-root-mismatch", "volsec", &[0.000_05; 3]),
                    row(shape, "on-root-mismatch", "kubelet-serial", &[0.002; 3]),
                    row(shape, "ownership-all", "volsec", &[1.0; 3]),
                    row(shape, "ownership-all", "kubelet-serial", &[3.0; 3]),
                ]
            })
            .collect(),
    );
    run.warnings = results::busy_warning("5.0 1 1 1/1 1", 2)
        .into_iter()
        .collect();
    run.ratios = ["on-root-mismatch", "ownership-all"]
        .iter()
        .map(|scenario| {
            let median = |implementation: &str| {
                run.rows
                    .iter()
                    .find(|r| r.scenario == *scenario && r.implementation == implementation)
                    .unwrap()
                    .median_s
            };
            results::Ratio {
                shape: "kubelet".into(),
                inodes: 200_000,
                scenario: scenario.to_string(),
                threads: 2,
                cold: false,
                baseline: "kubelet-serial".into(),
                speedup: median("kubelet-serial") / median("volsec"),
                volsec_median_s: Some(median("volsec")),
                baseline_median_s: Some(median("kubelet-serial")),
                chosen: false,
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.json");
    run.save(&file).unwrap();

    let out = volsec()
        .args(["bench", "report"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(
        md.contains("**Warning:** the load average at start (5.00)"),
        "{md}"
    );
    assert!(md.contains("| 2.0 ms vs 50 µs (volsec) |"), "{md}");
    assert!(md.contains("| 3.00x |"), "a walk keeps its ratio: {md}");
    assert!(!md.contains("40.00x"), "{md}");
    assert!(md.contains("- (did not walk)"), "{md}");
    assert!(
        !md.contains("4,000,000,000") && !md.contains("100,000,000"),
        "no rate for a pass that did not walk: {md}"
    );

    let out = volsec()
        .args(["bench", "report", "--output", "json"])
        .arg(&file)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs/schemas/bench-results.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let errors: Vec<String> = jsonschema::draft202012::new(&schema)
        .unwrap()
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "docs/schemas/bench-results.json: {errors:?}"
    );
    assert_eq!(doc["warnings"].as_array().map(Vec::len), Some(1));
    assert_eq!(doc["ratios"][0]["volsec_median_s"], 0.000_05);
    assert_eq!(
        doc["ratios"][0]["speedup"], 40.0,
        "the existing field is kept"
    );

    // Written before the warnings and the medians existed: still read.
    let mut old: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("warnings");
    for q in old["ratios"].as_array_mut().unwrap() {
        q.as_object_mut().unwrap().remove("volsec_median_s");
        q.as_object_mut().unwrap().remove("baseline_median_s");
    }
    std::fs::write(&file, old.to_string()).unwrap();
    let loaded = Results::load(&file).unwrap();
    assert!(loaded.warnings.is_empty() && loaded.ratios[0].volsec_median_s.is_none());
}
