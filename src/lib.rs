//! # volsec
//!
//! Prepares Kubernetes volumes for the pods that mount them, with exactly kubelet's results:
//! the fsGroup ownership pass, CSI `VOLUME_MOUNT_GROUP` delegation and SELinux labels, in
//! one parallel, race-free pass that explains every decision it makes.
//!
//! The flow, one module each:
//! - [`sys`]: thin typed wrappers over the `*at` system calls; nothing ever follows a symlink.
//! - [`walk`]: the parallel, descriptor-relative walk of one volume, root last.
//! - [`ownership`]: kubelet's fsGroup rules and the OnRootMismatch test.
//! - [`selinux`]: contexts, labels, the `-o context=` mount option, refused roots.
//! - [`prepare`]: one pass doing ownership and label together, root last.
//! - [`plan`]: kubelet's decisions from Pod, PersistentVolume and CSIDriver manifests.
//! - [`csi`]: the CSI Node capability probe (`VOLUME_MOUNT_GROUP`).
//! - [`agent`]: the node agent's gRPC service.
//! - [`bench`]: tree generators, baselines and the benchmark harness.

pub mod agent;
pub mod bench;
pub mod csi;
pub mod ownership;
pub mod plan;
pub mod prepare;
pub mod selinux;
pub mod sys;
pub mod walk;
