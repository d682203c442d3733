//! # volsec-bench
//!
//! Benchmarks as a feature of the product: deterministic trees, the baselines volsec is
//! measured against, and the harness behind `volsec bench`.
//!
//! Storage teams adopt volsec for its speed and must be able to check it on their own
//! hardware and keep it from regressing. Everything a measurement depends on lives here, in
//! its own crate, so the criterion benches, `volsec bench run` and the tests all build the
//! same trees and time the same baselines, while the path-based baselines, the scratch
//! filesystems and their signal handling never ride into `volsec-core`.
//!
//! - [`tree`]: deterministic tree generators sized by inode count, and a fast reset.
//! - [`baseline`]: kubelet's serial ownership walk, go-selinux's relabel, `chgrp -R`, rchm.
//! - [`bed`]: one tree and its state, with every timed pass (volsec and baselines).
//! - [`scratch`]: the filesystem under test (RAM-backed ext4 by default).
//! - [`slow_fs`]: a network-like volume: a FUSE passthrough that delays every request.
//! - [`scenario`]: what each scenario asks of every inode, and its baselines.
//! - [`harness`]: `volsec bench run`: every scenario, volsec and baselines taking turns.
//! - [`results`]: the JSON document of a run.
//! - [`compare`]: two runs side by side, the regression gate CI relies on.
//! - [`report`]: markdown tables and the SVG scaling plot.

pub mod baseline;
pub mod bed;
pub mod compare;
pub mod harness;
pub mod report;
pub mod results;
pub mod scenario;
pub mod scratch;
pub mod slow_fs;
pub mod tree;

/// Inodes in the trees of the criterion benches: the 203,001 under `cargo bench`,
/// a small tree under `cargo test --all-targets`, which starts the bench binaries without
/// `--bench` (criterion's test mode, one iteration each) only to check that they run.
pub fn criterion_tree_inodes() -> u64 {
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    if measuring {
        203_001
    } else {
        2_000
    }
}
