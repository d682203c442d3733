//! The harness behind `volsec bench run`: build the standard trees, run every scenario for
//! volsec and for the baselines in the same run, and record what was measured.
//!
//! A comparison is only fair when both sides meet the same machine in the same state, so
//! the implementations of a scenario take turns within each repetition (and the turn order
//! rotates from one repetition to the next), instead of running all of volsec and then all
//! of the baseline while the machine's load drifts. For the same reason every timed pass
//! starts after the filesystem has been written back ([`super::bed::settle`], untimed): a
//! pass must not pay for the journal work of whichever pass ran before it.
//!
//! Times are taken around the library call of the pass, nothing else. Peak RSS needs a
//! process of its own: volsec's first repetition of each scenario and thread count runs in
//! a child process, `volsec bench pass`, which makes the same library call as `volsec
//! apply`, times it the same way and then reports its own `VmHWM`, so the number is the
//! resident peak of a volsec process doing exactly this pass, unaffected by the harness's
//! own memory. That pass is a timed repetition like the others, not an extra warm-up: the
//! tree was just built or walked by the previous scenario, so the cache is already warm,
//! and every pass left out keeps the standard suite within its time budget.

use super::baseline;
use super::bed::{Bed, Target};
use super::results::{self, Machine, Ratio, Results, Row, Settings};
pub use super::scenario::{Implementation, Scenario};
use super::scratch::Scratch;
use super::tree::{Shape, Spec};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use volsec_core::ownership::ChangePolicy;
use volsec_core::prepare::Job;

/// A run of the harness.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tree shapes, each with an optional size of its own (`flat:1000000`) that replaces
    /// `sizes` for that shape.
    pub shapes: Vec<(Shape, Option<u64>)>,
    pub sizes: Vec<u64>,
    pub scenarios: Vec<Scenario>,
    pub repetitions: usize,
    /// volsec's thread counts (0: one per CPU); each scenario runs at each.
    pub threads: Vec<usize>,
    /// Drop the page, dentry and inode caches before every timed pass (root only).
    pub cold: bool,
    /// Also time `chgrp -R` in `ownership-all`. It is the floor of any chown pass, not what
    /// a node runs today, and adds about a tenth to the standard suite, so it is opt-in
    /// here (the criterion bench always has it).
    pub chgrp: bool,
    /// Also time rchm (the rcp project's recursive chmod/chgrp/chown) in `ownership-all` and
    /// `ownership-none`, with its defaults and adaptive ([`Implementation::Rchm`],
    /// [`Implementation::RchmAdaptive`]). A third-party tool that may not be installed, so
    /// opt-in: when asked for and not on `PATH`, the run says so in its warnings and has no
    /// rchm rows.
    pub rchm: bool,
    /// The `volsec` binary for the peak-RSS pass; `None` skips RSS (warm-up in-process).
    pub volsec_exe: Option<PathBuf>,
    /// Where the trees go: an existing directory, a filesystem to create, or (`None`, `None`)
    /// the RAM-backed default.
    pub scratch: Option<PathBuf>,
    pub fs: Option<super::scratch::FsKind>,
    /// The size of an ext4 or xfs scratch image (sparse), which sets its journal's size
    /// (`None`: [`super::scratch::IMAGE_BYTES`]).
    pub image_bytes: Option<u64>,
    pub seed: u64,
    /// Progress lines on stderr.
    pub verbose: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            shapes: Shape::ALL.iter().map(|s| (*s, None)).collect(),
            sizes: vec![200_000],
            scenarios: Scenario::ALL.to_vec(),
            repetitions: 3,
            threads: vec![0],
            cold: false,
            chgrp: false,
            rchm: false,
            volsec_exe: None,
            scratch: None,
            fs: None,
            image_bytes: None,
            seed: Spec::DEFAULT_SEED,
            verbose: false,
        }
    }
}

impl Config {
    /// Every tree of the run, in order.
    pub fn specs(&self) -> Vec<Spec> {
        let mut out = Vec::new();
        for &(shape, own) in &self.shapes {
            let sizes = own.map_or_else(|| self.sizes.clone(), |n| vec![n]);
            for inodes in sizes {
                out.push(Spec {
                    shape,
                    inodes,
                    seed: self.seed,
                });
            }
        }
        out
    }

    /// Whether the trees go on ext4 or xfs images this run makes (as root, unless
    /// `--scratch` or `--fs tmpfs`), which `image_bytes` sizes.
    fn makes_images(&self) -> bool {
        self.scratch.is_none()
            && self.fs.is_none_or(|kind| kind.is_image())
            && rustix::process::geteuid().is_root()
    }

    fn image_bytes(&self) -> u64 {
        self.image_bytes.unwrap_or(super::scratch::IMAGE_BYTES)
    }
}

/// Runs the whole suite and returns what was measured.
pub fn run(config: &Config) -> io::Result<Results> {
    let started = Instant::now();
    if config.repetitions == 0 {
        return Err(io::Error::other("--repetitions must be at least 1"));
    }
    for spec in config.specs() {
        super::tree::plan(spec).map_err(io::Error::other)?;
    }
    if config.makes_images() {
        let most = config.specs().iter().map(|s| s.inodes).max().unwrap_or(0);
        super::scratch::check_image_size(most, config.image_bytes())?;
    } else if config.image_bytes.is_some() {
        return Err(io::Error::other(
            "--image-size sizes an ext4 or xfs image, which is made only as root and not with --fs tmpfs",
        ));
    }
    if config.cold && !rustix::process::geteuid().is_root() {
        return Err(io::Error::other(
            "--cold drops the kernel's caches (/proc/sys/vm/drop_caches) and needs root",
        ));
    }
    let shared = match &config.scratch {
        Some(dir) => Some(Scratch::existing(dir)?),
        None => None,
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let loadavg_start = loadavg();
    let mut warnings: Vec<String> = results::busy_warning(&loadavg_start, cpus)
        .into_iter()
        .collect();
    let mut commands = BTreeMap::new();
    let rchm = rchm_for(config, &mut warnings, &mut commands)?;
    for w in &warnings {
        // Printed even with --quiet: it says how far to trust what follows.
        eprintln!("warning: {w}");
    }
    let mut filesystem = shared.as_ref().map(|s| s.description.clone());
    let mut rows = Vec::new();
    for spec in config.specs() {
        // A filesystem the harness makes is made afresh for each tree: no tree inherits
        // another's leftovers, and dropping a loop image is quicker than deleting a tree.
        let own = match shared {
            Some(_) => None,
            None => Some(new_filesystem(config, spec.inodes)?),
        };
        let scratch = shared.as_ref().or(own.as_ref()).expect("one of the two");
        filesystem.get_or_insert_with(|| scratch.description.clone());
        let t = Instant::now();
        let mut bed = Bed::build(scratch.build_path(), "tree", spec)?;
        bed.path = scratch.path().join("tree");
        note(
            config,
            format_args!(
                "{} {} inodes: built in {:.1} s on {}",
                spec.shape,
                bed.inodes(),
                t.elapsed().as_secs_f64(),
                scratch.description
            ),
        );
        let mut tree_rows: Vec<Row> = Vec::new();
        for &scenario in &config.scenarios {
            let new = run_scenario(
                config,
                &mut bed,
                scenario,
                cpus,
                &tree_rows,
                rchm.as_deref(),
            )?;
            tree_rows.extend(new);
        }
        rows.extend(tree_rows);
        if shared.is_some() {
            std::fs::remove_dir_all(&bed.path)?;
        }
    }
    let ratios = ratios(&rows);
    let results = Results {
        format: results::FORMAT,
        volsec_version: env!("CARGO_PKG_VERSION").to_string(),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(started.elapsed().as_secs()),
        machine: Machine {
            cpus,
            cpu_model: cpu_model(),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            memory_bytes: mem_total(),
            filesystem: filesystem.unwrap_or_default(),
            loadavg_start,
            loadavg_end: loadavg(),
        },
        settings: Settings {
            repetitions: config.repetitions,
            cold: config.cold,
            threads: config
                .threads
                .iter()
                .map(|&t| Implementation::Volsec(t).threads(cpus))
                .collect(),
            seed: config.seed,
            rss_method: if config.volsec_exe.is_some() {
                "VmHWM of a child `volsec bench pass` process doing the scenario's first timed repetition, read by the child itself at its end"
                    .into()
            } else {
                "not measured".into()
            },
            commands,
        },
        rows,
        ratios,
        total_seconds: started.elapsed().as_secs_f64(),
        warnings,
    };
    Ok(results)
}

/// A filesystem made for one tree: `kind`, or the RAM-backed default.
fn new_filesystem(config: &Config, inodes: u64) -> io::Result<Scratch> {
    match config.fs {
        Some(kind) => Scratch::create(kind, inodes, config.image_bytes()),
        None => Scratch::ram_backed(inodes, config.image_bytes()),
    }
}

/// rchm for this run, when it is asked for and a scenario of the run has it: the executable
/// on `PATH`, its version and command lines recorded in `commands`. When it is not on
/// `PATH`, a warning says so (once) and the run goes on without its rows.
fn rchm_for(
    config: &Config,
    warnings: &mut Vec<String>,
    commands: &mut BTreeMap<String, String>,
) -> io::Result<Option<PathBuf>> {
    let has_rchm = |s: &Scenario| s.baselines().iter().any(Implementation::is_rchm);
    if !config.rchm || !config.scenarios.iter().any(has_rchm) {
        return Ok(None);
    }
    let Some(exe) = baseline::find_rchm() else {
        warnings.push(
            "--with-rchm: rchm is not on PATH, so this run has no rchm rows (`cargo install --locked rcp-tools-rchm` puts it in ~/.cargo/bin, which sudo's PATH may lack)"
                .into(),
        );
        return Ok(None);
    };
    let version = baseline::rchm_version(&exe)?;
    for imp in [Implementation::Rchm, Implementation::RchmAdaptive] {
        let line = format!(
            "{version} ({}): {}",
            exe.display(),
            baseline::rchm_command_line(imp == Implementation::RchmAdaptive)
        );
        note(config, format_args!("{}: {line}", imp.name()));
        commands.insert(imp.name().to_string(), line);
    }
    Ok(Some(exe))
}

fn note(config: &Config, msg: std::fmt::Arguments<'_>) {
    if config.verbose {
        eprintln!("{msg}");
    }
}

/// One scenario on one tree: every implementation, `repetitions` times, taking turns.
fn run_scenario(
    config: &Config,
    bed: &mut Bed,
    scenario: Scenario,
    cpus: usize,
    earlier: &[Row],
    rchm: Option<&Path>,
) -> io::Result<Vec<Row>> {
    // Every pass leaves the tree wholly in the state the bed records, so scenarios follow
    // each other without a reset.
    let mut impls: Vec<Implementation> = config
        .threads
        .iter()
        .map(|&t| Implementation::Volsec(t))
        .collect();
    let two_passes = match scenario {
        Scenario::Fused => two_separate_passes(earlier),
        _ => None,
    };
    impls.extend(
        scenario
            .baselines()
            .iter()
            .filter(|b| !(two_passes.is_some() && **b == Implementation::KubeletThenGoSelinux))
            .filter(|b| config.chgrp || **b != Implementation::ChgrpR)
            .filter(|b| rchm.is_some() || !b.is_rchm()),
    );
    let mut rss = vec![None; impls.len()];
    let mut samples = vec![Vec::new(); impls.len()];
    let mut changed = vec![None; impls.len()];
    let mut chosen: Vec<Vec<usize>> = vec![Vec::new(); impls.len()];
    for rep in 0..config.repetitions {
        for turn in 0..impls.len() {
            let i = (turn + rep) % impls.len();
            if config.cold {
                drop_caches()?;
            } else {
                bed.settle()?;
            }
            let measured = match (impls[i], &config.volsec_exe) {
                (Implementation::Volsec(threads), Some(exe)) if rep == 0 => {
                    child_measured(exe, bed, scenario, threads)?
                }
                (imp, _) => pass(bed, scenario, imp, rchm)?,
            };
            samples[i].push(measured.elapsed.as_secs_f64());
            changed[i] = measured.wrote;
            rss[i] = rss[i].or(measured.peak_rss_kib);
            chosen[i].extend(measured.threads);
        }
    }
    let rows: Vec<Row> = impls
        .iter()
        .enumerate()
        .map(|(i, imp)| {
            let median = results::median(&samples[i]);
            // The default adapts on a network-like filesystem: its row records what it kept.
            let chosen = (*imp == Implementation::Volsec(0)
                && chosen[i].iter().any(|&t| t != cpus))
            .then(|| chosen[i].iter().copied().max().unwrap_or(cpus));
            let threads = chosen.unwrap_or_else(|| imp.threads(cpus));
            let shape = bed.spec.shape.as_str();
            Row {
                key: match chosen {
                    Some(_) => {
                        results::chosen_key(shape, bed.inodes(), scenario.as_str(), config.cold)
                    }
                    None => results::key(
                        shape,
                        bed.inodes(),
                        scenario.as_str(),
                        imp.name(),
                        threads,
                        config.cold,
                    ),
                },
                shape: bed.spec.shape.to_string(),
                inodes: bed.inodes(),
                scenario: scenario.as_str().to_string(),
                implementation: imp.name().to_string(),
                threads,
                cold: config.cold,
                min_s: samples[i].iter().copied().fold(f64::INFINITY, f64::min),
                max_s: samples[i].iter().copied().fold(0.0, f64::max),
                samples_s: samples[i].clone(),
                median_s: median,
                inodes_per_s: bed.inodes() as f64 / median,
                peak_rss_kib: rss[i],
                changed: changed[i],
                derived_from: None,
                chosen,
            }
        })
        .collect();
    for (imp, chosen) in impls.iter().zip(&chosen) {
        if *imp == Implementation::Volsec(0) && !chosen.is_empty() {
            note(
                config,
                format_args!(
                    "  {:<18} volsec with no --threads kept {:?} workers in flight",
                    scenario.as_str(),
                    chosen
                ),
            );
        }
    }
    let mut rows = rows;
    rows.extend(two_passes.map(|(kubelet, go)| {
        derived_sum(
            &kubelet,
            &go,
            scenario,
            Implementation::KubeletThenGoSelinux,
            cpus,
        )
    }));
    for r in &rows {
        note(
            config,
            format_args!(
                "  {:<18} {:<26} t{:<3} median {:>9}  [{} .. {}]  {:>12.0} inodes/s{}",
                r.scenario,
                r.implementation,
                r.threads,
                super::report::secs(r.median_s),
                super::report::secs(r.min_s),
                super::report::secs(r.max_s),
                r.inodes_per_s,
                r.peak_rss_kib.map_or(String::new(), |k| format!(
                    "  rss {:.1} MiB",
                    k as f64 / 1024.0
                ))
            ),
        );
    }
    Ok(rows)
}

/// The fused scenario's baseline is the two separate passes of today, one after the other:
/// exactly the work of kubelet's walk in `ownership-all` plus go-selinux's in `relabel-all`.
/// When this run already timed both on this tree, their samples are added instead of running
/// the two passes a third time (it keeps the standard suite within its time budget).
fn two_separate_passes(earlier: &[Row]) -> Option<(Row, Row)> {
    let find = |scenario: Scenario, imp: Implementation| {
        earlier
            .iter()
            .find(|r| r.scenario == scenario.as_str() && r.implementation == imp.name())
            .cloned()
    };
    let kubelet = find(Scenario::OwnershipAll, Implementation::KubeletSerial)?;
    let go = find(Scenario::RelabelAll, Implementation::GoSelinux)?;
    (kubelet.samples_s.len() == go.samples_s.len()).then_some((kubelet, go))
}

fn derived_sum(a: &Row, b: &Row, scenario: Scenario, imp: Implementation, cpus: usize) -> Row {
    let samples: Vec<f64> = a
        .samples_s
        .iter()
        .zip(&b.samples_s)
        .map(|(x, y)| x + y)
        .collect();
    let median = results::median(&samples);
    let threads = imp.threads(cpus);
    Row {
        key: results::key(
            &a.shape,
            a.inodes,
            scenario.as_str(),
            imp.name(),
            threads,
            a.cold,
        ),
        shape: a.shape.clone(),
        inodes: a.inodes,
        scenario: scenario.as_str().to_string(),
        implementation: imp.name().to_string(),
        threads,
        cold: a.cold,
        min_s: samples.iter().copied().fold(f64::INFINITY, f64::min),
        max_s: samples.iter().copied().fold(0.0, f64::max),
        median_s: median,
        inodes_per_s: a.inodes as f64 / median,
        samples_s: samples,
        peak_rss_kib: None,
        changed: a.changed.zip(b.changed).map(|(x, y)| x + y),
        derived_from: Some(format!("{} + {}", a.key, b.key)),
        chosen: None,
    }
}

/// What one timed pass gave.
struct Measured {
    elapsed: Duration,
    /// How many entries it wrote, when the implementation says.
    wrote: Option<u64>,
    /// The peak RSS of the process that did it, when it had one of its own.
    peak_rss_kib: Option<u64>,
    /// volsec's workers in flight (the most an adapted walk reached).
    threads: Option<usize>,
}

/// One timed pass in this process (or, for a command, in the command's).
fn pass(
    bed: &mut Bed,
    scenario: Scenario,
    imp: Implementation,
    rchm: Option<&Path>,
) -> io::Result<Measured> {
    let (own, label, policy) = scenario.targets();
    let start = Instant::now();
    let wrote = match imp {
        Implementation::Volsec(threads) => {
            let job = bed.job(own, label, policy);
            let start = Instant::now();
            let report = super::bed::run_volsec(&bed.path, &job, threads)?;
            let elapsed = start.elapsed();
            let t = &report.tally;
            check_volsec(
                bed,
                scenario,
                t.visited,
                t.changed,
                report.skipped_reason.is_some(),
            )?;
            return Ok(Measured {
                elapsed,
                wrote: Some(t.changed),
                peak_rss_kib: None,
                threads: Some(report.threads),
            });
        }
        Implementation::KubeletSerial => {
            Some(bed.kubelet(own.unwrap_or(Target::Keep), policy)?.written)
        }
        Implementation::ChgrpR => {
            bed.chgrp()?;
            None
        }
        Implementation::Rchm | Implementation::RchmAdaptive => {
            let exe = rchm.ok_or_else(|| io::Error::other("rchm was not found on PATH"))?;
            let adaptive = imp == Implementation::RchmAdaptive;
            let changed = bed.rchm(exe, own.unwrap_or(Target::Keep), adaptive)?;
            let expected = expected_changed(bed, scenario);
            if changed.is_some_and(|n| n != expected) {
                return Err(io::Error::other(format!(
                    "{}: scenario {} expected {expected} inodes changed of {}, but {} says it changed {}",
                    bed.path.display(),
                    scenario.as_str(),
                    bed.inodes(),
                    imp.name(),
                    changed.unwrap_or_default()
                )));
            }
            changed
        }
        Implementation::GoSelinux | Implementation::GoSelinuxFast => {
            Some(bed.go_selinux(label.unwrap_or(Target::Keep))?.written)
        }
        Implementation::KubeletThenGoSelinux => {
            let a = bed.kubelet(own.unwrap_or(Target::Keep), ChangePolicy::Always)?;
            let b = bed.go_selinux(label.unwrap_or(Target::Keep))?;
            Some(a.written + b.written)
        }
    };
    Ok(Measured {
        elapsed: start.elapsed(),
        wrote,
        peak_rss_kib: None,
        threads: None,
    })
}

/// volsec's pass of `scenario` in a child `volsec bench pass` process, which times it and
/// reports its own peak RSS.
fn child_measured(
    exe: &Path,
    bed: &mut Bed,
    scenario: Scenario,
    threads: usize,
) -> io::Result<Measured> {
    let (own, label, policy) = scenario.targets();
    let job = bed.job(own, label, policy);
    let out = child_pass(exe, &bed.path, &job, threads)?;
    check_volsec(bed, scenario, out.visited, out.changed, out.skipped)?;
    Ok(Measured {
        elapsed: Duration::from_secs_f64(out.elapsed_s),
        wrote: Some(out.changed),
        peak_rss_kib: Some(out.vm_hwm_kib),
        threads: (out.threads > 0).then_some(out.threads),
    })
}

/// A volsec pass that did not do what the scenario says measured the wrong thing.
fn check_volsec(
    bed: &Bed,
    scenario: Scenario,
    visited: u64,
    changed: u64,
    skipped: bool,
) -> io::Result<()> {
    let expected_changed = expected_changed(bed, scenario);
    let ok = changed == expected_changed
        && (scenario == Scenario::OnRootMismatch) == skipped
        && (skipped || visited == bed.inodes());
    if ok {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{}: scenario {} expected {} inodes changed of {} (walk {}), but volsec visited {} and changed {}",
        bed.path.display(),
        scenario.as_str(),
        expected_changed,
        bed.inodes(),
        if scenario == Scenario::OnRootMismatch { "skipped" } else { "complete" },
        visited,
        changed
    )))
}

/// The entries a pass of `scenario` must write: all of them or none.
fn expected_changed(bed: &Bed, scenario: Scenario) -> u64 {
    match scenario {
        Scenario::OwnershipAll | Scenario::RelabelAll | Scenario::Fused => bed.inodes(),
        _ => 0,
    }
}

/// Runs the pass of `job` in a fresh `volsec bench pass` process (the library call `volsec
/// apply` makes, nothing else) and returns what that process reports of it.
///
/// The child reads its own `VmHWM` from `/proc/self/status` at the end: the high-water mark
/// of its own address space since exec. (`ru_maxrss` from `wait4` would not do: Linux
/// carries the spawning process's resident size into it at exec, so it would count the
/// harness.)
pub fn child_pass(exe: &Path, path: &Path, job: &Job, threads: usize) -> io::Result<PassOutput> {
    use std::process::Command;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "pass"]).arg(path);
    cmd.args(["--threads", &threads.to_string()]);
    cmd.args(["--change-policy", job.change_policy.as_str()]);
    if let Some(o) = job.ownership {
        cmd.args(["--fs-group", &o.fs_group.to_string()]);
    }
    if let Some(l) = &job.label {
        cmd.args(["--selinux-context", &l.to_string()]);
    }
    let out = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: cannot run it: {e}", exe.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: Option<PassOutput> = serde_json::from_str(&stdout).ok();
    match parsed {
        Some(p) if out.status.success() => Ok(p),
        _ => Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            stdout.trim()
        ))),
    }
}

/// What `volsec bench pass` prints.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PassOutput {
    /// Peak resident set of the process since exec (`VmHWM`), KiB.
    pub vm_hwm_kib: u64,
    /// The library call's duration, seconds (process start-up not included).
    pub elapsed_s: f64,
    pub visited: u64,
    pub changed: u64,
    /// The pass was skipped (OnRootMismatch with a matching root).
    pub skipped: bool,
    /// The workers the walk kept in flight (the most, when it adapted them).
    #[serde(default)]
    pub threads: usize,
}

/// The body of `volsec bench pass`: one pass in this process, then its own peak RSS.
pub fn pass_in_this_process(path: &Path, job: &Job, threads: usize) -> io::Result<PassOutput> {
    let start = Instant::now();
    let report = super::bed::run_volsec(path, job, threads)?;
    let elapsed_s = start.elapsed().as_secs_f64();
    Ok(PassOutput {
        vm_hwm_kib: own_peak_rss_kib()?,
        elapsed_s,
        visited: report.tally.visited,
        changed: report.tally.changed,
        skipped: report.skipped_reason.is_some(),
        threads: report.threads,
    })
}

/// `VmHWM` of this process, KiB.
pub fn own_peak_rss_kib() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("/proc/self/status: no VmHWM line"))
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`: the next pass starts with cold page, dentry
/// and inode caches.
pub fn drop_caches() -> io::Result<()> {
    rustix::fs::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("/proc/sys/vm/drop_caches: {e} (--cold needs root)"),
        )
    })
}

/// volsec's speedup over each baseline, for every scenario, tree and thread count.
fn ratios(rows: &[Row]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for v in rows.iter().filter(|r| r.is_volsec()) {
        for b in rows.iter().filter(|b| {
            !b.is_volsec() && b.shape == v.shape && b.inodes == v.inodes && b.scenario == v.scenario
        }) {
            out.push(Ratio {
                shape: v.shape.clone(),
                inodes: v.inodes,
                scenario: v.scenario.clone(),
                threads: v.threads,
                cold: v.cold,
                baseline: b.implementation.clone(),
                speedup: b.median_s / v.median_s,
                volsec_median_s: Some(v.median_s),
                baseline_median_s: Some(b.median_s),
                chosen: v.chosen.is_some(),
            });
        }
    }
    out
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "unknown".into(), |s| s.trim().to_string())
}

fn loadavg() -> String {
    read_trimmed("/proc/loadavg")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}
