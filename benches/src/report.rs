//! Benchmark results for people: markdown tables, the scaling plot, and the comparison table.
//!
//! The scaling report answers two questions at a glance: does the cost grow linearly with
//! the tree (throughput flat against size), and where do more threads stop helping
//! (throughput against thread count). OnRootMismatch is left out of the plot: it does not
//! walk, so its "throughput" only says the tree was not looked at (the tables have it).

use super::compare::{Basis, Comparison, Statistic};
use super::results::{self, Results, Row, SUB_MILLISECOND};
use plotters::prelude::*;
use std::fmt::Write;
use std::io;
use std::path::Path;

/// Everything in a run, as markdown: machine, results, speedups, and the scaling tables.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "Machine: {} CPUs ({}), Linux {}, {:.1} GiB RAM; trees on {}; load average {} at start, {} at end; {} repetitions, {} cache; {:.0} s in all.\n",
        m.cpus,
        m.cpu_model,
        m.kernel,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        m.filesystem,
        first_three(&m.loadavg_start),
        first_three(&m.loadavg_end),
        r.settings.repetitions,
        if r.settings.cold { "cold" } else { "warm" },
        r.total_seconds
    );
    for w in &r.warnings {
        let _ = writeln!(s, "**Warning:** {w}.\n");
    }
    for (implementation, command) in &r.settings.commands {
        let _ = writeln!(s, "Baseline `{implementation}`: {command}\n");
    }
    s.push_str("| tree | inodes | scenario | implementation | threads | median | min .. max | inodes/s | peak RSS |\n");
    s.push_str("|---|---:|---|---|---:|---:|---:|---:|---:|\n");
    for row in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} .. {} | {} | {} |",
            row.shape,
            thousands(row.inodes),
            row.scenario,
            row.implementation,
            results::threads_label(row.threads, row.chosen.is_some()),
            secs(row.median_s),
            secs(row.min_s),
            secs(row.max_s),
            rate(row),
            row.peak_rss_kib
                .map_or("".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        );
    }
    if !r.ratios.is_empty() {
        s.push_str("\nvolsec against the baselines (baseline median / volsec median; > 1 means volsec is faster):\n\n");
        s.push_str("| tree | inodes | scenario | volsec threads | baseline | speedup |\n");
        s.push_str("|---|---:|---|---:|---|---:|\n");
        for q in &r.ratios {
            // A sub-millisecond pass (OnRootMismatch) is shown by both times: its ratio is
            // mostly timer and process noise.
            let speedup = match (q.volsec_median_s, q.baseline_median_s) {
                (Some(v), Some(b)) if v < SUB_MILLISECOND => {
                    format!("{} vs {} (volsec)", secs(b), secs(v))
                }
                _ => format!("{:.2}x", q.speedup),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {speedup} |",
                q.shape,
                thousands(q.inodes),
                q.scenario,
                results::threads_label(q.threads, q.chosen),
                q.baseline,
            );
        }
    }
    scaling_tables(r, &mut s);
    s
}

fn scaling_tables(r: &Results, s: &mut String) {
    let scenarios = scenarios(r);
    let default_threads = r.settings.threads.first().copied().unwrap_or(0);
    // On a network-like bed volsec's default chose its own concurrency: its rows stand for
    // the default in the first table, and open the second.
    let chosen = r.rows.iter().any(|row| row.chosen.is_some());
    let (title, default) = if chosen {
        ("with the concurrency it chose".to_string(), Threads::Chosen)
    } else {
        (
            format!("at {default_threads} worker thread(s)"),
            Threads::Fixed(default_threads),
        )
    };
    let _ = writeln!(
        s,
        "\nvolsec throughput (inodes/s) against tree size, {title}:\n"
    );
    header(s, "tree | inodes", &scenarios);
    for (shape, inodes) in trees(r) {
        let cells: Vec<String> = scenarios
            .iter()
            .map(|sc| cell(r, &shape, inodes, sc, default))
            .collect();
        let _ = writeln!(
            s,
            "| {shape} | {} | {} |",
            thousands(inodes),
            cells.join(" | ")
        );
    }
    let _ = writeln!(s, "\nvolsec throughput (inodes/s) against threads:\n");
    header(s, "tree | inodes | threads", &scenarios);
    let mut settings: Vec<Threads> = Vec::new();
    if chosen {
        settings.push(Threads::Chosen);
    }
    for &t in &r.settings.threads {
        if !settings.contains(&Threads::Fixed(t)) {
            settings.push(Threads::Fixed(t));
        }
    }
    for (shape, inodes) in trees(r) {
        for &t in &settings {
            let cells: Vec<String> = scenarios
                .iter()
                .map(|sc| cell(r, &shape, inodes, sc, t))
                .collect();
            if cells.iter().all(String::is_empty) {
                continue;
            }
            let label = match t {
                Threads::Fixed(n) => n.to_string(),
                Threads::Chosen => "chosen".to_string(),
            };
            let _ = writeln!(
                s,
                "| {shape} | {} | {label} | {} |",
                thousands(inodes),
                cells.join(" | ")
            );
        }
    }
}

/// Which of volsec's rows: a fixed thread count, or the default that chose its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threads {
    Fixed(usize),
    Chosen,
}

fn header(s: &mut String, first: &str, scenarios: &[String]) {
    let _ = writeln!(s, "| {first} | {} |", scenarios.join(" | "));
    let cols = first.matches('|').count() + 1 + scenarios.len();
    let _ = writeln!(s, "|{}", "---:|".repeat(cols));
}

fn cell(r: &Results, shape: &str, inodes: u64, scenario: &str, threads: Threads) -> String {
    volsec_row(r, shape, inodes, scenario, threads).map_or("".into(), |row| match walked(row) {
        true => thousands(row.inodes_per_s as u64),
        // The time, where a rate would only be the tree's size over a root check.
        false => secs(row.median_s),
    })
}

fn volsec_row<'a>(
    r: &'a Results,
    shape: &str,
    inodes: u64,
    scenario: &str,
    threads: Threads,
) -> Option<&'a Row> {
    r.rows.iter().find(|row| {
        row.is_volsec()
            && row.shape == shape
            && row.inodes == inodes
            && row.scenario == scenario
            && match threads {
                Threads::Chosen => row.chosen.is_some(),
                Threads::Fixed(n) => row.chosen.is_none() && row.threads == n,
            }
    })
}

/// The (shape, inodes) trees of a run, in run order.
fn trees(r: &Results) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for row in &r.rows {
        let t = (row.shape.clone(), row.inodes);
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn scenarios(r: &Results) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for row in &r.rows {
        if !out.contains(&row.scenario) {
            out.push(row.scenario.clone());
        }
    }
    out
}

/// A comparison as markdown: each scenario's change (the gate), then every row, then what is
/// missing or new.
pub fn comparison(c: &Comparison) -> String {
    let mut s = String::new();
    let g = &c.gate;
    let stat = match g.statistic {
        Statistic::Median => "median",
        Statistic::Min => "min",
    };
    let basis = match g.basis {
        Basis::Relative => "relative to the same run's main baseline",
        Basis::Absolute => "in seconds",
    };
    let _ = writeln!(
        s,
        "| scenario (geometric mean over trees) | trees | change | verdict |"
    );
    s.push_str("|---|---:|---:|---|\n");
    for sc in &c.scenarios {
        let verdict = if sc.regression { "REGRESSION" } else { "ok" };
        let _ = writeln!(
            s,
            "| {} | {} | {:+.1}% | {verdict} |",
            sc.group, sc.rows, sc.change_pct
        );
    }
    let _ = writeln!(s, "\n| row | old {stat} | new {stat} | change | verdict |");
    s.push_str("|---|---:|---:|---:|---|\n");
    for row in &c.rows {
        let verdict = match (row.gated, row.regression) {
            (_, true) => "REGRESSION",
            (true, false) => "ok",
            (false, false) => "not gated",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:+.1}% | {verdict} |",
            row.key,
            value(row.old, &row.unit),
            value(row.new, &row.unit),
            row.change_pct
        );
    }
    for key in &c.missing {
        let _ = writeln!(s, "| {key} | | | | missing in the new run |");
    }
    for key in &c.added {
        let _ = writeln!(s, "| {key} | | | | new (not in the old run) |");
    }
    let scenarios = c.scenarios.iter().filter(|s| s.regression).count();
    let rows = c.rows.iter().filter(|r| r.regression).count();
    let _ = writeln!(
        s,
        "\n{scenarios} scenario(s) slower by more than {}% and {rows} row(s) by more than {}% \
         (volsec's {stat}s {basis}; passes under {} ms not gated).",
        g.max_regression_pct,
        g.max_row_regression_pct,
        g.noise_floor_s * 1000.0
    );
    s
}

/// A compared number in its unit: seconds, or a fraction of a baseline.
fn value(v: f64, unit: &str) -> String {
    match unit.strip_prefix("x ") {
        Some(baseline) => format!("{v:.3} x {baseline}"),
        None => secs(v),
    }
}

/// The scaling plot: throughput against tree size (left) and against threads (right), for
/// the first tree shape of the run, with the main baselines for contrast.
pub fn plot_svg(r: &Results, path: &Path) -> io::Result<()> {
    draw(r, path)
        .map_err(|e| io::Error::other(format!("{}: cannot draw the plot: {e}", path.display())))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(r: &Results, path: &Path) -> DrawResult {
    let Some(shape) = r.rows.first().map(|row| row.shape.clone()) else {
        return Err("no results to plot".into());
    };
    let area = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    area.fill(&WHITE)?;
    let (left, right) = area.split_horizontally(600);
    let threads = r.settings.threads.first().copied().unwrap_or(1);
    let walked = |row: &&Row| row.shape == shape && row.scenario != "on-root-mismatch";

    // Left: throughput against size, volsec (at the first thread count) and baselines.
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for row in r.rows.iter().filter(walked) {
        let is_main_baseline =
            matches!(row.implementation.as_str(), "kubelet-serial" | "go-selinux")
                && matches!(row.scenario.as_str(), "ownership-all" | "relabel-all");
        if !(row.is_volsec() && row.threads == threads || is_main_baseline) {
            continue;
        }
        let name = format!("{} {}", row.implementation, row.scenario);
        push_point(&mut series, name, (row.inodes as f64, row.inodes_per_s));
    }
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .collect();
    let (lo, hi) = bounds(&xs);
    let top = ymax(&series);
    let mut chart = ChartBuilder::on(&left)
        .caption(
            format!("{shape}: inodes/s against tree size"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((lo / 1.5..hi * 1.5).log_scale(), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("inodes in the tree")
        .y_desc("inodes/s")
        .x_label_formatter(&|x| thousands(*x as u64))
        .y_label_formatter(&|y| thousands(*y as u64))
        .draw()?;
    draw_series(&mut chart, &series)?;

    // Right: volsec's throughput against threads on the largest tree of that shape.
    let largest = r
        .rows
        .iter()
        .filter(walked)
        .map(|row| row.inodes)
        .max()
        .unwrap_or(0);
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for row in r.rows.iter().filter(walked) {
        if row.is_volsec() && row.inodes == largest {
            push_point(
                &mut series,
                format!("volsec {}", row.scenario),
                (row.threads as f64, row.inodes_per_s),
            );
        }
    }
    let tmax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let top = ymax(&series);
    let mut chart = ChartBuilder::on(&right)
        .caption(
            format!(
                "{shape}, {} inodes: inodes/s against threads",
                thousands(largest)
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..tmax + 1.0, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("worker threads")
        .y_desc("inodes/s")
        .y_label_formatter(&|y| thousands(*y as u64))
        .draw()?;
    draw_series(&mut chart, &series)?;
    area.present()?;
    Ok(())
}

fn push_point(series: &mut Vec<(String, Vec<(f64, f64)>)>, name: String, p: (f64, f64)) {
    match series.iter_mut().find(|s| s.0 == name) {
        Some(s) => s.1.push(p),
        None => series.push((name, vec![p])),
    }
}

fn draw_series<'a, X, DB>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    series: &[(String, Vec<(f64, f64)>)],
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
{
    for (i, (name, points)) in series.iter().enumerate() {
        let mut points = points.clone();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

fn bounds(xs: &[f64]) -> (f64, f64) {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(0.0, f64::max);
    if lo.is_finite() && hi > 0.0 {
        (lo, hi)
    } else {
        (1.0, 10.0)
    }
}

fn ymax(series: &[(String, Vec<(f64, f64)>)]) -> f64 {
    let m = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    if m > 0.0 {
        m * 1.15
    } else {
        1.0
    }
}

fn first_three(loadavg: &str) -> String {
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seconds with a unit that keeps three significant digits.
/// Whether a row's pass walked the tree, so that inodes per second mean something: not an
/// OnRootMismatch pass (a root check, for volsec and kubelet alike), nor any pass under a
/// millisecond.
fn walked(row: &Row) -> bool {
    row.scenario != "on-root-mismatch" && row.median_s >= SUB_MILLISECOND
}

/// A row's inodes per second, or `-` for a pass that did not walk the tree ([`walked`]): its
/// "rate" would be the tree's size over a root check.
fn rate(row: &Row) -> String {
    if walked(row) {
        thousands(row.inodes_per_s as u64)
    } else {
        "- (did not walk)".into()
    }
}

pub fn secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// 1234567 -> "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
