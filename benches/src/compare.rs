//! `volsec bench compare`: the regression gate, two runs of the suite side by side.
//!
//! A shared runner's speed drifts: on the project's 2-vCPU VM two back-to-back runs of the
//! same build differed by up to 25% in the *baselines'* times, which no change of volsec
//! can cause. So by default a volsec row is measured against its scenario's main baseline
//! in the same run, repetition by repetition (they run back to back, taking turns): its
//! number is "this fraction of kubelet's time", and a machine that is slower for a minute
//! slows both sides. `--basis absolute` compares volsec's own seconds instead.
//!
//! What is left is each pass's own noise (a journal commit landing in one pass, not the
//! next, a baseline faster in one run than in the other): a few percent on most rows (two
//! back-to-back runs of one build: scenarios within 3.1%, but three flat-tree rows +11.5%
//! to +23.6%, where that tree's baselines ran 10-17% faster in the second run). A change of
//! volsec's code moves a whole scenario, so the gate is the geometric mean over the trees
//! of each scenario's change, held to `--max-regression`; a single row is a regression only
//! beyond `--max-row-regression`, which catches a slowdown confined to one tree shape
//! without letting one noisy pass fail CI. Passes shorter than the noise floor
//! (OnRootMismatch takes microseconds) are shown, never gated.

use super::results::{Results, Row};
use super::scenario::Scenario;
use serde::Serialize;

/// Which number of a row's repetitions is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    /// The median of the repetitions.
    #[default]
    Median,
    /// The fastest repetition: the least disturbed by other load on a shared machine.
    Min,
}

impl Statistic {
    fn of(&self, values: &[f64]) -> f64 {
        match self {
            Statistic::Median => super::results::median(values),
            Statistic::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        }
    }
}

/// What a volsec row's number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// volsec's time as a fraction of its scenario's main baseline in the same run, taken
    /// repetition by repetition.
    #[default]
    Relative,
    /// volsec's own time, in seconds.
    Absolute,
}

/// The thresholds of the gate.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gate {
    pub statistic: Statistic,
    pub basis: Basis,
    /// Largest accepted slowdown of a scenario (geometric mean over its trees), percent.
    pub max_regression_pct: f64,
    /// Largest accepted slowdown of one row, percent.
    pub max_row_regression_pct: f64,
    /// volsec passes shorter than this (seconds) are not gated.
    pub noise_floor_s: f64,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            statistic: Statistic::Median,
            basis: Basis::Relative,
            max_regression_pct: 10.0,
            max_row_regression_pct: 25.0,
            noise_floor_s: 0.002,
        }
    }
}

/// One row of both runs.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub key: String,
    /// What `old` and `new` are: `s` (seconds) or `x <baseline>` (a fraction of it).
    pub unit: String,
    pub old: f64,
    pub new: f64,
    /// Change in percent (positive: slower).
    pub change_pct: f64,
    /// Whether this row is gated (volsec's own rows, above the noise floor).
    pub gated: bool,
    pub regression: bool,
}

/// A scenario's change over all its trees.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioChange {
    /// `scenario/t<threads>/warm|cold`.
    pub group: String,
    pub rows: usize,
    /// Geometric mean of the rows' changes, percent.
    pub change_pct: f64,
    pub regression: bool,
}

/// Two runs side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub gate: Gate,
    pub scenarios: Vec<ScenarioChange>,
    pub rows: Vec<Compared>,
    /// Rows of the old run the new one lacks.
    pub missing: Vec<String>,
    /// Rows only the new run has.
    pub added: Vec<String>,
}

impl Comparison {
    /// Whether the new run regressed anywhere: a scenario or a single row.
    pub fn regressed(&self) -> bool {
        self.scenarios.iter().any(|s| s.regression) || self.rows.iter().any(|r| r.regression)
    }
}

/// Compares two runs row by row, then scenario by scenario.
pub fn compare(old: &Results, new: &Results, gate: Gate) -> Comparison {
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for o in &old.rows {
        let Some(n) = new.rows.iter().find(|n| n.key == o.key) else {
            missing.push(o.key.clone());
            continue;
        };
        rows.push(compare_row(old, o, new, n, &gate));
    }
    let added = new
        .rows
        .iter()
        .filter(|n| !old.rows.iter().any(|o| o.key == n.key))
        .map(|n| n.key.clone())
        .collect();
    Comparison {
        scenarios: scenario_changes(old, &rows, &gate),
        gate,
        rows,
        missing,
        added,
    }
}

fn compare_row(old_run: &Results, o: &Row, new_run: &Results, n: &Row, gate: &Gate) -> Compared {
    let gated = o.is_volsec() && gate.statistic.of(&o.samples_s) >= gate.noise_floor_s;
    let relative = match gate.basis {
        Basis::Relative if o.is_volsec() => {
            let floor = gate.noise_floor_s;
            main_baseline(old_run, o, floor).zip(main_baseline(new_run, n, floor))
        }
        _ => None,
    };
    let (unit, old, new) = match relative {
        Some((ob, nb)) => (
            format!("x {}", ob.implementation),
            relative_cost(o, ob, gate.statistic),
            relative_cost(n, nb, gate.statistic),
        ),
        None => (
            "s".to_string(),
            gate.statistic.of(&o.samples_s),
            gate.statistic.of(&n.samples_s),
        ),
    };
    let change_pct = (new / old - 1.0) * 100.0;
    Compared {
        key: o.key.clone(),
        unit,
        old,
        new,
        change_pct,
        gated,
        regression: gated && change_pct > gate.max_row_regression_pct,
    }
}

/// The row of `row`'s scenario's main baseline on the same tree, when it takes longer than
/// the noise floor (kubelet's OnRootMismatch test is one `lstat`: no yardstick).
fn main_baseline<'a>(run: &'a Results, row: &Row, noise_floor_s: f64) -> Option<&'a Row> {
    let scenario = Scenario::ALL
        .into_iter()
        .find(|s| s.as_str() == row.scenario)?;
    let name = scenario.baselines().first()?.name();
    run.rows
        .iter()
        .find(|b| {
            b.implementation == name
                && b.scenario == row.scenario
                && b.shape == row.shape
                && b.inodes == row.inodes
                && b.cold == row.cold
        })
        .filter(|b| b.median_s >= noise_floor_s)
}

/// volsec's time as a fraction of the baseline's, repetition by repetition when both have
/// the same repetitions (they ran in turns), else of the two statistics.
fn relative_cost(volsec: &Row, baseline: &Row, statistic: Statistic) -> f64 {
    if volsec.samples_s.len() == baseline.samples_s.len() {
        let paired: Vec<f64> = volsec
            .samples_s
            .iter()
            .zip(&baseline.samples_s)
            .map(|(v, b)| v / b)
            .collect();
        statistic.of(&paired)
    } else {
        statistic.of(&volsec.samples_s) / statistic.of(&baseline.samples_s)
    }
}

/// The geometric mean change of each scenario's gated rows (per thread count and cache
/// state), in the old run's order.
fn scenario_changes(old: &Results, rows: &[Compared], gate: &Gate) -> Vec<ScenarioChange> {
    let mut groups: Vec<(String, Vec<f64>)> = Vec::new();
    for c in rows.iter().filter(|c| c.gated) {
        let Some(row) = old.rows.iter().find(|r| r.key == c.key) else {
            continue;
        };
        let cache = if row.cold { "cold" } else { "warm" };
        let threads = match row.chosen {
            Some(_) => "auto".to_string(),
            None => row.threads.to_string(),
        };
        let group = format!("{}/t{threads}/{cache}", row.scenario);
        let log_change = (c.new / c.old).ln();
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, changes)) => changes.push(log_change),
            None => groups.push((group, vec![log_change])),
        }
    }
    groups
        .into_iter()
        .map(|(group, changes)| {
            let mean = changes.iter().sum::<f64>() / changes.len() as f64;
            let change_pct = (mean.exp() - 1.0) * 100.0;
            ScenarioChange {
                group,
                rows: changes.len(),
                change_pct,
                regression: change_pct > gate.max_regression_pct,
            }
        })
        .collect()
}

/// Parses `10%` or `10` for the percentage thresholds.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%');
    match t.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a percentage (e.g. 10%)")),
    }
}
