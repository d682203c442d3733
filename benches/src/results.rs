//! What a benchmark run found, as a JSON document.
//!
//! A row is one (tree, scenario, implementation, threads, warm/cold) measured several
//! times; its `key` names it the same way in every run, so two documents are compared row
//! by row ([`super::compare`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// The version of the document's layout; `compare` refuses another one.
pub const FORMAT: u32 = 1;

/// One benchmark run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub format: u32,
    pub volsec_version: String,
    /// Seconds since the epoch when the run started.
    pub started_unix: u64,
    pub machine: Machine,
    pub settings: Settings,
    pub rows: Vec<Row>,
    /// How many times faster volsec was than each baseline, per scenario.
    pub ratios: Vec<Ratio>,
    pub total_seconds: f64,
    /// What makes the numbers less trustworthy, as printed when the run started: a load
    /// average above the CPU count. Absent in documents written before it existed.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The facts a number depends on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_bytes: u64,
    /// The filesystem the trees were on, e.g. `ext4 (sparse 128 GiB image in /dev/shm, loop-mounted, RAM-backed)`.
    pub filesystem: String,
    /// `/proc/loadavg` at the start and the end: a loaded machine gives noisy numbers.
    pub loadavg_start: String,
    pub loadavg_end: String,
}

/// How the run was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub repetitions: usize,
    pub cold: bool,
    pub threads: Vec<usize>,
    pub seed: u64,
    /// How peak RSS was measured.
    pub rss_method: String,
    /// The third-party commands timed as baselines, by implementation: version, path and
    /// command line (`GID` and `TREE` standing for the group and the tree), e.g. `rchm`.
    /// Absent when none ran, and in documents written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub commands: BTreeMap<String, String>,
}

/// One (tree, scenario, implementation, threads, cache state), measured `samples_s.len()` times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub key: String,
    pub shape: String,
    pub inodes: u64,
    pub scenario: String,
    pub implementation: String,
    /// Worker threads (for a baseline, its own fixed concurrency).
    pub threads: usize,
    pub cold: bool,
    pub samples_s: Vec<f64>,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// Inodes per second at the median.
    pub inodes_per_s: f64,
    /// Peak resident set of a `volsec apply` process doing this pass (volsec rows only).
    pub peak_rss_kib: Option<u64>,
    /// Entries the pass wrote, when the implementation reports it.
    pub changed: Option<u64>,
    /// Set when the row was not timed on its own but computed from other rows of the same
    /// run (the fused scenario's two separate passes: the sum of their samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<String>,
    /// volsec with no `--threads` on a filesystem where it chose its own concurrency (a
    /// network-like one): the most workers it kept in flight, which `threads` then repeats.
    /// Its key says `tauto`, so it never collides with a fixed `--threads` row of the same
    /// count. Absent where the default is one per CPU (local filesystems), as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<usize>,
}

impl Row {
    pub fn is_volsec(&self) -> bool {
        self.implementation == "volsec"
    }
}

/// `baseline` median / volsec median for one scenario on one tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    pub shape: String,
    pub inodes: u64,
    pub scenario: String,
    pub threads: usize,
    pub cold: bool,
    pub baseline: String,
    /// How many times faster volsec was (> 1: volsec faster).
    pub speedup: f64,
    /// The two medians the speedup divides, in seconds: a pass under a millisecond
    /// (OnRootMismatch) is shown by its times, its ratio being mostly timer and process
    /// noise. Absent in documents written before they existed.
    #[serde(default)]
    pub volsec_median_s: Option<f64>,
    #[serde(default)]
    pub baseline_median_s: Option<f64>,
    /// The volsec row chose its own concurrency (see [`Row::chosen`]); `threads` is what it
    /// kept in flight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chosen: bool,
}

/// Below this median (seconds) a pass is shown by its times, not by a ratio or a rate: it
/// did not walk the tree, and a ratio of two sub-millisecond times says little.
pub const SUB_MILLISECOND: f64 = 1e-3;

/// The warning for a machine busier than its CPUs when the run starts: `loadavg` is
/// `/proc/loadavg`'s text. `None` when the 1-minute load is at most `cpus`.
pub fn busy_warning(loadavg: &str, cpus: usize) -> Option<String> {
    let load: f64 = loadavg.split_whitespace().next()?.parse().ok()?;
    (load > cpus as f64).then(|| {
        format!(
            "the load average at start ({load:.2}) exceeds the CPU count ({cpus}): other work competes for the CPUs, so these numbers are noisy and slower than the machine can do"
        )
    })
}

/// The key that names a row identically in every run.
pub fn key(
    shape: &str,
    inodes: u64,
    scenario: &str,
    implementation: &str,
    threads: usize,
    cold: bool,
) -> String {
    let cache = if cold { "cold" } else { "warm" };
    format!("{shape}/{inodes}/{scenario}/{implementation}/t{threads}/{cache}")
}

/// The key of volsec's row when it chose its own concurrency ([`Row::chosen`]): the same
/// in every run on the same kind of filesystem, whatever count it settled on.
pub fn chosen_key(shape: &str, inodes: u64, scenario: &str, cold: bool) -> String {
    let cache = if cold { "cold" } else { "warm" };
    format!("{shape}/{inodes}/{scenario}/volsec/tauto/{cache}")
}

/// How a row's threads are shown: the count, marked when volsec chose it.
pub fn threads_label(threads: usize, chosen: bool) -> String {
    if chosen {
        format!("{threads} (chosen)")
    } else {
        threads.to_string()
    }
}

pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

impl Results {
    pub fn load(path: &Path) -> io::Result<Results> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let results: Results = serde_json::from_str(&text).map_err(|e| {
            io::Error::other(format!(
                "{}: not a volsec bench result: {e}",
                path.display()
            ))
        })?;
        if results.format != FORMAT {
            return Err(io::Error::other(format!(
                "{}: result format {} but this volsec reads format {FORMAT}",
                path.display(),
                results.format
            )));
        }
        Ok(results)
    }

    pub fn save(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).expect("results serialize");
        std::fs::write(path, text + "\n")
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }
}
