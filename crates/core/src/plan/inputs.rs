//! What a decision is made from: the manifests and the node facts, and why inputs are
//! refused. Apart from the engine (`decide`) and its rules (`fs_group`, `labels`), which
//! all read these, so no rule imports the engine.

use super::gates::FeatureGates;
use super::identity::ImageAccounts;
use crate::selinux::Context;
use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use k8s_openapi::api::storage::v1::CSIDriver;

/// The manifests: the pod, the volume's name, and what the volume leads to.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The pod the volume belongs to.
    pub pod: &'a Pod,
    /// The volume's name in `spec.volumes`.
    pub volume: &'a str,
    /// The PersistentVolume bound to the volume's claim (`--pv`).
    pub pv: Option<&'a PersistentVolume>,
    /// The CSIDriver object of the volume's driver (`--csidriver`); none means defaults.
    pub csi_driver: Option<&'a CSIDriver>,
}

/// What volsec knows about the node.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// Whether SELinux is enabled on the node: without it no label is applied.
    pub selinux_enabled: bool,
    /// The node's Kubernetes version and feature gates.
    pub gates: FeatureGates,
    /// The CSI driver's answer to NodeGetCapabilities: whether it has VOLUME_MOUNT_GROUP;
    /// `None` when it was not asked.
    pub volume_mount_group: Option<bool>,
    /// The node's container file label defaults (user, role, type, level).
    pub container_file_defaults: Context,
    /// The image's /etc/passwd and /etc/group, for supplementalGroupsPolicy Merge.
    pub image: Option<ImageAccounts>,
}

/// Which input a refusal is about, so the caller can name the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The Pod manifest.
    Pod,
    /// The PersistentVolume manifest (`--pv`).
    PersistentVolume,
    /// The CSIDriver manifest (`--csidriver`).
    CsiDriver,
}

/// Inputs kubelet would refuse, or volsec cannot model: one sentence naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecideError {
    /// The manifest the message is about.
    pub input: Input,
    /// One sentence naming the field and what is wrong with it.
    pub message: String,
}

impl DecideError {
    pub(crate) fn pod(message: String) -> DecideError {
        DecideError {
            input: Input::Pod,
            message,
        }
    }
    pub(crate) fn pv(message: String) -> DecideError {
        DecideError {
            input: Input::PersistentVolume,
            message,
        }
    }
    pub(crate) fn driver(message: String) -> DecideError {
        DecideError {
            input: Input::CsiDriver,
            message,
        }
    }
}
