//! kubelet's volume decisions, from Pod, PersistentVolume and CSIDriver manifests.
//!
//! Before a volume is mounted for a pod, two questions have one right answer each: who
//! applies fsGroup (nobody, the CSI driver through VOLUME_MOUNT_GROUP, or kubelet, walking
//! or skipping on OnRootMismatch), and how the SELinux label gets there (`-o context=` at
//! mount, a recursive relabel, or nothing). kubelet spreads that decision over five files;
//! here it is [`decide`], a pure function whose [`Plan`] says what and why.
//!
//! - [`manifest`]: reading the manifests (YAML/JSON, multi-document) with the API types.
//! - [`gates`]: kubelet's feature gates and their defaults per release.
//! - [`identity`]: each container's uid, gid and groups.
//! - `decide`: the entry point; `fs_group` and `labels`: the rules; `inputs`: what they
//!   read (manifests, node facts) and why inputs are refused; `model`: the plan itself;
//!   `volume`: the plugin behind a volume.

mod decide;
mod fs_group;
pub mod gates;
pub mod identity;
mod inputs;
mod labels;
pub mod manifest;
mod model;
mod volume;

pub use decide::{decide, identities};
pub use inputs::{DecideError, Input, Inputs, NodeFacts};
pub use model::{OwnershipAction, OwnershipPlan, Plan, SeLinuxAction, SeLinuxPlan};
pub use volume::VolumeInfo;
