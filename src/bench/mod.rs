//! Benchmarks as a feature of the product: deterministic trees, the baselines volsec is
//! measured against, and the harness behind `volsec bench`.
//!
//! Storage teams adopt volsec for its speed and must be able to check it on their own
//! hardware and keep it from regressing. Everything a measurement depends on lives here,
//! in the library, so the criterion benches, `volsec bench run` and the tests all build the
//! same trees and time the same baselines.
//!
//! - [`tree`]: deterministic tree generators sized by inode count, and a fast reset.
//! - [`baseline`]: kubelet's serial ownership walk, go-selinux's relabel, `chgrp -R`.
//! - [`scratch`]: the filesystem under test (RAM-backed ext4 by default).

pub mod baseline;
pub mod scratch;
pub mod tree;
