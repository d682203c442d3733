//! `volsec bench`: measure volsec against the passes nodes run today, on standard trees, and
//! gate regressions in CI.

use super::exit::{Exit, Refusal};
use std::path::PathBuf;
use volsec_bench::harness::{self, Config, Scenario};
use volsec_bench::scratch::FsKind;
use volsec_bench::tree::{Shape, Spec};
use volsec_bench::{compare, report, results};

/// Build standard trees and measure volsec against serial baselines; compare two runs.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    Run(RunArgs),
    Compare(CompareArgs),
    Report(ReportArgs),
    #[command(hide = true)]
    Pass(PassArgs),
}

/// One volsec pass in a fresh process, printing its own peak RSS as JSON (used by `run`).
#[derive(clap::Args, Debug)]
struct PassArgs {
    path: PathBuf,
    #[arg(long)]
    fs_group: Option<u32>,
    #[arg(long)]
    selinux_context: Option<String>,
    #[arg(long, value_parser = super::flags::change_policy(), default_value_t = volsec_core::ownership::ChangePolicy::Always)]
    change_policy: volsec_core::ownership::ChangePolicy,
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Build the standard trees and time every scenario for volsec and the baselines.
///
/// Each tree is generated deterministically (same shape, size and seed: same tree), brought
/// to a known group and label, and every scenario runs volsec beside the baselines it is
/// measured against, taking turns within each repetition:
///
///   ownership-all      every inode gets a new fsGroup    vs kubelet-serial (and chgrp -R, rchm)
///   ownership-none     fsGroup already right (Always)     vs kubelet-serial (and rchm)
///   on-root-mismatch   OnRootMismatch, matching root      vs kubelet-serial (same policy)
///   relabel-all        every label differs                vs go-selinux (2 x CPUs workers)
///   relabel-none       every label already right          vs go-selinux fast mode
///   fused-all          fsGroup and label both differ      vs kubelet-serial then go-selinux
///
/// The baselines are path-based re-creations of kubelet's and go-selinux's walks; they are
/// only ever run on the trees generated here. By default the trees live on a RAM-backed
/// ext4 (a sparse 128 GiB image in /dev/shm, loop-mounted, mkfs's 1 GiB journal; root), or
/// tmpfs in /dev/shm without root. Each timed pass starts after a syncfs (untimed; with
/// --cold, a sync and a drop of the caches).
///
/// Examples:
///   volsec bench run --json bench.json --plot scaling.svg
///   volsec bench run --shapes kubelet --sizes 10000,100000,1000000 --threads 1,2 --output markdown
///   volsec bench run --shapes flat:1000000 --scenarios ownership-all,ownership-none
///   volsec bench run --fs slow:500us --shapes kubelet --scenarios ownership-all --with-rchm
///   volsec bench run --scratch /mnt/nfs/scratch --repetitions 5 --cold
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
struct RunArgs {
    /// Tree shapes: kubelet (1,001 dirs, 200k files, 2k symlinks at 203,001 inodes), dataset
    /// (~1,281 files per dir), deep (chains 128 dirs deep), node-modules (many tiny dirs),
    /// flat (one directory). `SHAPE:INODES` gives one shape its own size.
    #[arg(long, value_delimiter = ',', value_name = "SHAPE[:INODES],...",
          default_value = "kubelet,dataset,deep,node-modules,flat", value_parser = parse_shape)]
    shapes: Vec<(Shape, Option<u64>)>,

    /// Tree sizes in inodes (standard: 10k to 2M; accepted: 10 to 20M; `k` and `M` suffixes).
    #[arg(long, value_delimiter = ',', value_name = "INODES,...", default_value = "200k",
          value_parser = parse_count)]
    sizes: Vec<u64>,

    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SCENARIO,...")]
    scenarios: Vec<Scenario>,

    /// Timed repetitions of each scenario and implementation (volsec's first one in a child
    /// process, for its peak RSS).
    #[arg(long, value_name = "N", default_value_t = 3)]
    repetitions: usize,

    /// volsec's worker thread counts; each scenario runs at each, for the scaling report
    /// (default: one per online CPU).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    threads: Vec<usize>,

    /// Drop the page, dentry and inode caches before every timed pass (`sync; echo 3 >
    /// /proc/sys/vm/drop_caches`; needs root).
    #[arg(long)]
    cold: bool,

    /// Also time `chgrp -R` in ownership-all: the floor of any chown pass (fchownat on every
    /// entry, no stat), not what a node runs today; adds about a tenth to the standard suite.
    #[arg(long)]
    with_chgrp: bool,

    /// Also time rchm (the rcp project's parallel recursive chmod/chgrp/chown; `cargo install
    /// rcp-tools-rchm`) in ownership-all and ownership-none, asked for kubelet's group and
    /// modes: with its defaults (rchm) and with its adaptive throttle (rchm-adaptive). Runs
    /// the `rchm` found on PATH; without one the run warns and has no rchm rows.
    #[arg(long)]
    with_rchm: bool,

    /// Build the trees in this directory, on the filesystem under test.
    #[arg(long, value_name = "DIR", conflicts_with = "fs")]
    scratch: Option<PathBuf>,

    /// Create a fresh filesystem for each tree: an ext4 or xfs image in /dev/shm,
    /// loop-mounted, or a tmpfs (needs root). Default: ext4 as root, else tmpfs /dev/shm.
    /// `slow:LATENCY` (e.g. slow:500us, slow:2ms) is a network-like volume: a FUSE
    /// passthrough of a tmpfs answering every request after LATENCY, many at once (needs
    /// /dev/fuse and fusermount3).
    #[arg(long, value_name = "ext4|xfs|tmpfs|slow:LATENCY", value_parser = FsKind::parse)]
    fs: Option<FsKind>,

    /// Size of the ext4 or xfs image, sparse (default 128G; `G` for GiB, `M` for MiB).
    /// mkfs sizes the journal by it (mke2fs 1.47: 64 MiB at 2G, 128 MiB at 16G, 256 MiB at
    /// 32G, 1 GiB from 128G up; mkfs.xfs: a 64 MiB log at 2G and 128G alike), and a pass
    /// that fills about three quarters of its journal waits for checkpoints.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes, conflicts_with = "scratch")]
    image_size: Option<u64>,

    /// Seed of the tree generator.
    #[arg(long, default_value_t = Spec::DEFAULT_SEED)]
    seed: u64,

    /// Write the results as JSON (the input of `volsec bench compare`).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Write the scaling plot (throughput against tree size and threads) as SVG.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,

    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
    output: ReportFormat,

    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// Compare two `volsec bench run --json` results and fail on a regression.
///
/// Rows are matched by tree, scenario, implementation, threads and cache state. volsec's
/// rows are gated, the baselines only shown. By default each volsec row is its time as a
/// fraction of its scenario's main baseline in the same run (kubelet-serial, go-selinux,
/// ...), repetition by repetition: a shared machine that is slower during one run slows
/// both sides, and the gate sees only what volsec changed. `--basis absolute` compares
/// seconds instead.
///
/// A scenario regresses when the geometric mean of its rows' changes (over the trees)
/// exceeds --max-regression; a single row when its change exceeds --max-row-regression.
/// Passes shorter than --noise-floor-ms (OnRootMismatch) are shown, not gated. Rows missing
/// from either side are listed.
///
/// Exit status: 0 no regression, 1 at least one regression, 2 unreadable input.
///
/// Examples:
///   volsec bench compare main.json branch.json --max-regression 10%
///   volsec bench compare old.json new.json --basis absolute --statistic min
///   volsec bench compare old.json new.json --max-regression 5% --output json
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
struct CompareArgs {
    /// The reference run.
    old: PathBuf,
    /// The run to check.
    new: PathBuf,
    /// Largest accepted slowdown of a scenario (geometric mean over its trees), in percent.
    #[arg(long, value_name = "PERCENT", default_value = "10%", value_parser = compare::parse_percent)]
    max_regression: f64,
    /// Largest accepted slowdown of any one row, in percent.
    #[arg(long, value_name = "PERCENT", default_value = "25%", value_parser = compare::parse_percent)]
    max_row_regression: f64,
    /// volsec passes shorter than this many milliseconds are not gated.
    #[arg(long, value_name = "MS", default_value_t = 2.0)]
    noise_floor_ms: f64,
    /// Which number of each row's repetitions to compare.
    #[arg(long, value_enum, default_value_t = compare::Statistic::Median)]
    statistic: compare::Statistic,
    /// What volsec's number is: a fraction of the same run's baseline, or seconds.
    #[arg(long, value_enum, default_value_t = compare::Basis::Relative)]
    basis: compare::Basis,
    #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
    output: ReportFormat,
}

/// Print the tables (and draw the plot) of a saved run.
///
/// Example:
///   volsec bench report bench.json --plot scaling.svg
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
struct ReportArgs {
    /// A `volsec bench run --json` result.
    file: PathBuf,
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
    output: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    /// Markdown tables (readable as text too).
    Markdown,
    /// The JSON document.
    Json,
}

impl Args {
    /// The format asked for stdout, so a refusal is printed in it too.
    pub fn output(&self) -> super::output::Format {
        use super::output::Format;
        let format = match &self.command {
            Command::Run(a) => a.output,
            Command::Compare(a) => a.output,
            Command::Report(a) => a.output,
            Command::Pass(_) => ReportFormat::Json,
        };
        match format {
            ReportFormat::Json => Format::Json,
            ReportFormat::Markdown => Format::Text,
        }
    }
}

pub fn run(args: Args) -> Result<Exit, Refusal> {
    match args.command {
        Command::Run(a) => run_suite(a),
        Command::Compare(a) => compare(a),
        Command::Report(a) => show(a),
        Command::Pass(a) => one_pass(a),
    }
}

fn one_pass(a: PassArgs) -> Result<Exit, Refusal> {
    let label = a
        .selinux_context
        .as_deref()
        .map(volsec_core::selinux::Context::parse)
        .transpose()?;
    let job = volsec_core::prepare::Job {
        ownership: a
            .fs_group
            .map(|fs_group| volsec_core::ownership::Ownership {
                fs_group,
                read_only: false,
                owner: None,
            }),
        label,
        change_policy: a.change_policy,
        ignore_unsupported_labels: false,
    };
    let out = harness::pass_in_this_process(&a.path, &job, a.threads)?;
    println!("{}", serde_json::to_string(&out).expect("serializes"));
    Ok(Exit::Done)
}

fn run_suite(a: RunArgs) -> Result<Exit, Refusal> {
    volsec_bench::scratch::clean_up_on_interrupt();
    let config = Config {
        shapes: a.shapes,
        sizes: a.sizes,
        scenarios: if a.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            a.scenarios
        },
        repetitions: a.repetitions,
        threads: if a.threads.is_empty() {
            vec![0]
        } else {
            a.threads
        },
        cold: a.cold,
        chgrp: a.with_chgrp,
        rchm: a.with_rchm,
        volsec_exe: std::env::current_exe().ok(),
        scratch: a.scratch,
        fs: a.fs,
        image_bytes: a.image_size,
        seed: a.seed,
        verbose: !a.quiet,
    };
    let results = harness::run(&config)?;
    write_outputs(&results, a.json.as_deref(), a.plot.as_deref())?;
    print(&results, a.output);
    Ok(Exit::Done)
}

fn write_outputs(
    results: &results::Results,
    json: Option<&std::path::Path>,
    plot: Option<&std::path::Path>,
) -> std::io::Result<()> {
    if let Some(path) = json {
        results.save(path)?;
    }
    if let Some(path) = plot {
        report::plot_svg(results, path)?;
    }
    Ok(())
}

fn print(results: &results::Results, format: ReportFormat) {
    match format {
        ReportFormat::Markdown => print!("{}", report::markdown(results)),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(results).expect("results serialize")
        ),
    }
}

fn compare(a: CompareArgs) -> Result<Exit, Refusal> {
    let (old, new) = match (
        results::Results::load(&a.old),
        results::Results::load(&a.new),
    ) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return Err(Refusal::new(e)),
    };
    let gate = compare::Gate {
        statistic: a.statistic,
        basis: a.basis,
        max_regression_pct: a.max_regression,
        max_row_regression_pct: a.max_row_regression,
        noise_floor_s: a.noise_floor_ms / 1000.0,
    };
    let c = compare::compare(&old, &new, gate);
    match a.output {
        ReportFormat::Markdown => print!("{}", report::comparison(&c)),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&c).expect("comparison serializes")
        ),
    }
    Ok(Exit::done_if(!c.regressed()))
}

fn show(a: ReportArgs) -> Result<Exit, Refusal> {
    let results = results::Results::load(&a.file)?;
    write_outputs(&results, None, a.plot.as_deref())?;
    print(&results, a.output);
    if results.rows.is_empty() {
        // The tables printed above are empty: they say it.
        return Err(Refusal::reported());
    }
    Ok(Exit::Done)
}

fn parse_shape(s: &str) -> Result<(Shape, Option<u64>), String> {
    let (name, size) = match s.split_once(':') {
        Some((n, size)) => (n, Some(parse_count(size)?)),
        None => (s, None),
    };
    let shape = name.parse::<Shape>().map_err(|e| e.to_string())?;
    Ok((shape, size))
}

fn parse_count(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1_000),
        Some('M' | 'm') => (&t[..t.len() - 1], 1_000_000),
        _ => (t, 1),
    };
    let n: f64 = digits
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{s:?} is not an inode count (e.g. 200000, 200k, 2M)"))?;
    Ok((n * mult as f64).round() as u64)
}

/// `128G`, `2G`, `512M`: a size in GiB or MiB, in bytes.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.chars().last() {
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        _ => {
            return Err(format!(
                "{s:?} is not a size: give G or M (e.g. 128G, 2G, 512M)"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 128G, 2G, 512M)"))
}
