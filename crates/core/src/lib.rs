//! # volsec-core
//!
//! The race-free core of volsec: everything that touches a volume, and kubelet's rules for
//! what to change. It depends on no command line, async runtime, gRPC or benchmark crate, so
//! the code that walks an untrusted tree as host root stays small enough to read whole.
//!
//! The flow, one module each, each importing only the ones above it:
//! - [`display`]: paths and names as text for people, escaped as `ls -b` does and bounded:
//!   what every message and log line that names an entry goes through.
//! - [`sys`]: thin typed wrappers over the `*at` system calls; nothing ever follows a symlink.
//!   The only module allowed `unsafe`.
//! - [`walk`]: the parallel, descriptor-relative walk of one volume, root last.
//! - [`ownership`]: kubelet's fsGroup rules and the OnRootMismatch test.
//! - [`selinux`]: contexts, labels, the `-o context=` mount option, refused roots.
//! - [`prepare`]: one pass doing ownership and label together, root last.
//! - [`plan`]: kubelet's decisions from Pod, PersistentVolume and CSIDriver manifests.

pub mod display;
pub mod ownership;
pub mod plan;
pub mod prepare;
pub mod selinux;
#[allow(unsafe_code)]
pub mod sys;
pub mod walk;
