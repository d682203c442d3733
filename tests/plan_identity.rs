//! Container identities of the security-context page's pods: runAsUser overrides, and
//! supplementalGroupsPolicy Merge / Strict with the image's /etc/group.

use crate::common::{fixture, success_json, volsec_pod};
use volsec_core::plan::gates::{FeatureGates, KubeVersion};
use volsec_core::plan::identity::{ContainerIdentity, ImageAccounts};
use volsec_core::plan::{identities, manifest, NodeFacts};
use volsec_core::selinux::Context;

fn node(version: &str, image: Option<ImageAccounts>) -> NodeFacts {
    NodeFacts {
        selinux_enabled: false,
        gates: FeatureGates::defaults(KubeVersion::parse(version).unwrap()),
        volume_mount_group: None,
        container_file_defaults: Context::parse("system_u:object_r:container_file_t:s0").unwrap(),
        image,
    }
}

fn agnhost() -> ImageAccounts {
    ImageAccounts::read(&fixture("images/agnhost")).expect("fixture image")
}

fn first(pod: &str, node: &NodeFacts) -> ContainerIdentity {
    let pod = manifest::load(&fixture(pod)).unwrap();
    identities(&pod, "none", node).remove(0)
}

#[test]
fn merge_adds_the_image_s_group_50000() {
    // The page: uid=1000 gid=3000 groups=3000,4000,50000
    let id = first(
        "pods/security-context-5.yaml",
        &node("1.36", Some(agnhost())),
    );
    assert_eq!((id.uid, id.gid), (Some(1000), Some(3000)));
    assert_eq!(id.groups, [3000, 4000, 50000]);
    assert_eq!(id.supplemental_groups_policy, "Merge");
    assert!(id.image_groups_known);
}

#[test]
fn merge_without_the_image_says_it_does_not_know() {
    let id = first("pods/security-context-5.yaml", &node("1.36", None));
    assert_eq!(id.groups, [3000, 4000]);
    assert!(!id.image_groups_known);
}

#[test]
fn strict_keeps_only_the_pod_s_groups() {
    // The page: uid=1000 gid=3000 groups=3000,4000
    let id = first(
        "pods/security-context-6.yaml",
        &node("1.36", Some(agnhost())),
    );
    assert_eq!(id.groups, [3000, 4000]);
    assert_eq!(id.supplemental_groups_policy, "Strict");
    assert!(id.image_groups_known);
}

#[test]
fn strict_is_ignored_where_the_gate_is_off() {
    // SupplementalGroupsPolicy was alpha, off by default, in 1.31 and 1.32.
    let id = first(
        "pods/security-context-6.yaml",
        &node("1.32", Some(agnhost())),
    );
    assert_eq!(id.groups, [3000, 4000, 50000]);
    assert_eq!(id.supplemental_groups_policy, "Merge");
}

#[test]
fn a_container_run_as_user_overrides_the_pod_s() {
    let id = first("pods/security-context-2.yaml", &node("1.36", None));
    assert_eq!(id.uid, Some(2000));
    assert_eq!(id.gid, None);
}

#[test]
fn no_security_context_leaves_the_image_in_charge() {
    for pod in [
        "pods/security-context-3.yaml",
        "pods/security-context-4.yaml",
    ] {
        let id = first(pod, &node("1.36", None));
        assert_eq!((id.uid, id.gid), (None, None), "{pod}");
        assert!(id.groups.is_empty());
        let with_image = first(pod, &node("1.36", Some(agnhost())));
        assert_eq!(
            with_image.gid, None,
            "the uid is the image's USER, unknown here"
        );
    }
}

#[test]
fn the_cli_reads_the_image_root() {
    let out = volsec_pod(
        "plan",
        "pods/security-context.yaml",
        "sec-ctx-vol",
        &["--output", "json", "--image-root", "@images/agnhost"],
    )
    .output()
    .unwrap();
    let plan = success_json(&out);
    // uid 1000 is user-defined-in-image, a member of group 50000: Merge adds it.
    assert_eq!(
        plan["containers"][0]["groups"],
        serde_json::json!([2000, 3000, 4000, 50000])
    );
}

#[test]
fn image_symlinks_resolve_inside_the_image() {
    // An image whose /etc/group is an absolute symlink must not read the host's file.
    let img = tempfile::tempdir().unwrap();
    std::fs::create_dir(img.path().join("etc")).unwrap();
    std::fs::write(img.path().join("etc/passwd"), "u:x:1000:1000::/:/bin/sh\n").unwrap();
    std::fs::write(img.path().join("real-group"), "g:x:777:u\n").unwrap();
    std::os::unix::fs::symlink("/real-group", img.path().join("etc/group")).unwrap();
    let accounts = ImageAccounts::read(img.path()).unwrap();
    assert_eq!(accounts.groups.len(), 1);
    assert_eq!(accounts.groups[0].gid, 777);
}
