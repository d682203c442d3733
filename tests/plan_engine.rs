//! The decision engine as a library: a pure function of manifests and node facts, whose
//! plan serializes with every documented field and becomes the pass `apply --pod` runs.

use crate::common::fixture;
use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use k8s_openapi::api::storage::v1::CSIDriver;
use volsec_core::ownership::ChangePolicy;
use volsec_core::plan::gates::{FeatureGates, KubeVersion};
use volsec_core::plan::{decide, manifest, Inputs, NodeFacts, OwnershipAction, SeLinuxAction};
use volsec_core::selinux::Context;

fn node(selinux: bool, volume_mount_group: Option<bool>) -> NodeFacts {
    NodeFacts {
        selinux_enabled: selinux,
        gates: FeatureGates::defaults(KubeVersion::NEWEST),
        volume_mount_group,
        container_file_defaults: Context::parse("system_u:object_r:container_file_t:s0").unwrap(),
        image: None,
    }
}

struct Manifests {
    pod: Pod,
    pv: PersistentVolume,
    driver: CSIDriver,
}

fn load(pod: &str, pv: &str, driver: &str) -> Manifests {
    Manifests {
        pod: manifest::load(&fixture(pod)).unwrap(),
        pv: manifest::load(&fixture(pv)).unwrap(),
        driver: manifest::load(&fixture(driver)).unwrap(),
    }
}

fn inputs(m: &Manifests) -> Inputs<'_> {
    Inputs {
        pod: &m.pod,
        volume: "data",
        pv: Some(&m.pv),
        csi_driver: Some(&m.driver),
    }
}

#[test]
fn the_same_inputs_give_the_same_plan() {
    let m = load(
        "pods/selinux-level.yaml",
        "pv/rwo.yaml",
        "csidriver/rwo-fstype.yaml",
    );
    let a = decide(&inputs(&m), &node(true, None)).unwrap();
    let b = decide(&inputs(&m), &node(true, None)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn relabel_and_walk_become_one_job() {
    let m = load(
        "pods/selinux-level.yaml",
        "pv/rwo.yaml",
        "csidriver/rwo-fstype.yaml",
    );
    let plan = decide(&inputs(&m), &node(true, Some(false))).unwrap();
    assert_eq!(plan.ownership.action, OwnershipAction::Recursive);
    assert_eq!(plan.selinux.action, SeLinuxAction::Relabel);
    let job = plan.job().expect("work for volsec");
    assert_eq!(
        job.ownership.map(|o| (o.fs_group, o.read_only)),
        Some((2000, false))
    );
    assert_eq!(
        job.label.map(|l| l.to_string()).as_deref(),
        Some("system_u:object_r:container_file_t:s0:c123,c456")
    );
    assert_eq!(job.change_policy, ChangePolicy::Always);
    assert!(job.ignore_unsupported_labels);
}

#[test]
fn a_mount_option_label_is_not_relabeled() {
    let m = load(
        "pods/selinux-level.yaml",
        "pv/rwop.yaml",
        "csidriver/rwo-fstype.yaml",
    );
    let plan = decide(&inputs(&m), &node(true, None)).unwrap();
    assert_eq!(plan.selinux.action, SeLinuxAction::MountOption);
    let job = plan.job().expect("the walk remains");
    assert!(job.label.is_none());
    assert!(job.ownership.is_some());
}

#[test]
fn delegated_and_labeled_by_mount_leaves_nothing_to_do() {
    let m = load(
        "pods/on-root-mismatch.yaml",
        "pv/rwop.yaml",
        "csidriver/file.yaml",
    );
    let plan = decide(&inputs(&m), &node(true, Some(true))).unwrap();
    assert_eq!(plan.ownership.action, OwnershipAction::Delegate);
    assert_eq!(plan.ownership.volume_mount_group.as_deref(), Some("2000"));
    assert!(plan.job().is_none());
}

#[test]
fn every_documented_field_is_in_the_json() {
    let m = load(
        "pods/on-root-mismatch.yaml",
        "pv/rwo.yaml",
        "csidriver/file.yaml",
    );
    let plan = decide(&inputs(&m), &node(false, None)).unwrap();
    let v = serde_json::to_value(&plan).unwrap();
    for key in [
        "pod",
        "volume",
        "kubernetes_version",
        "feature_gates",
        "selinux_enabled",
        "csi_volume_mount_group",
        "ownership",
        "selinux",
        "containers",
        "warnings",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    for key in [
        "action",
        "reason",
        "fs_group",
        "volume_mount_group",
        "change_policy",
        "read_only",
    ] {
        assert!(v["ownership"].get(key).is_some(), "missing ownership.{key}");
    }
    for key in ["action", "reason", "label", "mount_option"] {
        assert!(v["selinux"].get(key).is_some(), "missing selinux.{key}");
    }
    for key in [
        "name",
        "source",
        "plugin",
        "driver",
        "claim_name",
        "persistent_volume",
        "access_modes",
        "fs_type",
        "read_only",
        "inline",
    ] {
        assert!(v["volume"].get(key).is_some(), "missing volume.{key}");
    }
    for key in [
        "name",
        "kind",
        "uid",
        "gid",
        "groups",
        "supplemental_groups_policy",
        "image_groups_known",
        "privileged",
        "mounts_volume",
        "mount_read_only",
    ] {
        assert!(
            v["containers"][0].get(key).is_some(),
            "missing containers[].{key}"
        );
    }
}
