//! Bad input to `volsec plan` and `volsec apply --pod`: one sentence naming the file, the
//! field and what was expected; exit status 2; nothing walked.

use crate::common::{fixture_args, volsec, volsec_pod};

/// Runs `volsec plan` with `args` (`@rel` is a fixture path); asserts exit 2 and one line
/// on stderr, and returns it.
fn refused(args: &[&str]) -> String {
    let out = volsec()
        .arg("plan")
        .args(fixture_args(args))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(out.stdout.is_empty(), "no plan on bad input");
    assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
    err
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let e = refused(&["--pod", "@bad/malformed.yaml", "--volume", "data"]);
    assert!(
        e.contains("bad/malformed.yaml: malformed YAML or JSON in document 1"),
        "{e}"
    );
    assert!(e.contains("line 8"), "{e}");
}

#[test]
fn a_field_of_the_wrong_type() {
    let e = refused(&["--pod", "@bad/wrong-type.yaml", "--volume", "data"]);
    assert!(
        e.contains("bad/wrong-type.yaml: document 1: not a valid Pod"),
        "{e}"
    );
    assert!(e.contains("fsGroup"), "{e}");
}

#[test]
fn wrong_kinds() {
    let e = refused(&["--pod", "@pv/rwo.yaml", "--volume", "data"]);
    assert!(
        e.contains("pv/rwo.yaml: field kind: expected a Pod, found PersistentVolume (document 1)"),
        "{e}"
    );
    let e = refused(&[
        "--pod",
        "@pods/on-root-mismatch.yaml",
        "--volume",
        "data",
        "--pv",
        "@pods/security-context.yaml",
    ]);
    assert!(
        e.contains("security-context.yaml: field kind: expected a PersistentVolume, found Pod"),
        "{e}"
    );
    let e = refused(&[
        "--pod",
        "@pods/on-root-mismatch.yaml",
        "--volume",
        "data",
        "--pv",
        "@pv/rwo.yaml",
        "--csidriver",
        "@pv/rwo.yaml",
    ]);
    assert!(
        e.contains("field kind: expected a CSIDriver, found PersistentVolume"),
        "{e}"
    );
}

#[test]
fn a_missing_volume_lists_the_pod_s_volumes() {
    let e = refused(&["--pod", "@pods/selinux-level.yaml", "--volume", "date"]);
    assert!(e.contains("selinux-level.yaml: field spec.volumes: the pod has no volume named \"date\"; its volumes are data, config"), "{e}");
}

#[test]
fn a_claim_needs_its_persistent_volume() {
    let e = refused(&["--pod", "@pods/on-root-mismatch.yaml", "--volume", "data"]);
    assert!(e.contains("field spec.volumes[0] (data): it uses the PersistentVolumeClaim \"data-claim\"; give the PersistentVolume bound to it with --pv FILE"), "{e}");
}

#[test]
fn a_persistent_volume_bound_to_another_claim() {
    let e = refused(&[
        "--pod",
        "@pods/on-root-mismatch.yaml",
        "--volume",
        "data",
        "--pv",
        "@pv/other-claim.yaml",
    ]);
    assert!(e.contains("pv/other-claim.yaml: field spec.claimRef.name: the PersistentVolume \"pv-other\" is bound to claim \"someone-else\""), "{e}");
}

#[test]
fn a_csi_driver_object_for_another_driver() {
    let e = refused(&[
        "--pod",
        "@pods/on-root-mismatch.yaml",
        "--volume",
        "data",
        "--pv",
        "@pv/rwo.yaml",
        "--csidriver",
        "@csidriver/other-driver.yaml",
    ]);
    assert!(e.contains("csidriver/other-driver.yaml: field metadata.name: the CSIDriver is \"nfs.csi.k8s.io\", but volume \"data\" uses driver \"block.csi.example.com\""), "{e}");
}

#[test]
fn feature_gates_and_releases() {
    let base = [
        "--pod",
        "@pods/security-context.yaml",
        "--volume",
        "sec-ctx-vol",
    ];
    let with = |extra: &[&str]| refused(&[&base[..], extra].concat());
    let e = with(&["--feature-gates", "SELinuxMount=true,SELinuxMagic=true"]);
    assert!(e.contains("--feature-gates: unknown feature gate \"SELinuxMagic\"; volsec knows SELinuxMountReadWriteOncePod, SELinuxChangePolicy, SELinuxMount, SupplementalGroupsPolicy"), "{e}");
    let e = with(&["--feature-gates", "SELinuxMount"]);
    assert!(
        e.contains("\"SELinuxMount\" is not NAME=true or NAME=false"),
        "{e}"
    );
    let e = with(&[
        "--feature-gates",
        "SELinuxMount=true",
        "--kubernetes-version",
        "1.29",
    ]);
    assert!(
        e.contains("SELinuxMount does not exist in Kubernetes 1.29; it appeared in 1.30"),
        "{e}"
    );
    let e = with(&["--feature-gates", "SELinuxMountReadWriteOncePod=false"]);
    assert!(
        e.contains("GA and locked to true in Kubernetes 1.36"),
        "{e}"
    );
    let e = with(&["--kubernetes-version", "1.40"]);
    assert!(
        e.contains(
            "--kubernetes-version: \"1.40\" is not a release volsec knows; expected 1.25 to 1.36"
        ),
        "{e}"
    );
}

#[test]
fn an_unknown_change_policy() {
    let e = refused(&["--pod", "@bad/bad-change-policy.yaml", "--volume", "data"]);
    assert!(e.contains("field spec.securityContext.fsGroupChangePolicy: \"Sometimes\" is not a policy; expected Always or OnRootMismatch"), "{e}");
}

#[test]
fn a_missing_file() {
    let e = refused(&["--pod", "/nonexistent/pod.yaml", "--volume", "data"]);
    assert!(
        e.contains("/nonexistent/pod.yaml: cannot read the Pod"),
        "{e}"
    );
}

#[test]
fn apply_with_bad_input_walks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let before = (
        crate::common::gid_mode(dir.path()),
        crate::common::gid_mode(&file),
    );
    let out = volsec_pod("apply", "pods/on-root-mismatch.yaml", "data", &["--quiet"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("give the PersistentVolume bound to it with --pv FILE"),
        "{err}"
    );
    assert_eq!(
        (
            crate::common::gid_mode(dir.path()),
            crate::common::gid_mode(&file)
        ),
        before
    );
}

#[test]
fn selinux_fields() {
    let e = refused(&[
        "--pod",
        "@bad/bad-level.yaml",
        "--volume",
        "data",
        "--selinux-enabled",
    ]);
    assert!(
        e.contains(
            "field spec.containers[\"app\"].securityContext.seLinuxOptions: seLinuxOptions.level"
        ),
        "{e}"
    );
    assert!(e.contains("expected a level such as s0:c123,c456"), "{e}");
    let e = refused(&[
        "--pod",
        "@bad/bad-selinux-change-policy.yaml",
        "--volume",
        "data",
    ]);
    assert!(
        e.contains("field spec.securityContext.seLinuxChangePolicy: \"Sometimes\" is not a policy; expected MountOption or Recursive"),
        "{e}"
    );
}

#[test]
fn an_unknown_fs_group_policy() {
    let e = refused(&[
        "--pod",
        "@pods/on-root-mismatch.yaml",
        "--volume",
        "data",
        "--pv",
        "@pv/rwo.yaml",
        "--csidriver",
        "@bad/bad-fs-group-policy.yaml",
    ]);
    assert!(
        e.contains("bad/bad-fs-group-policy.yaml: field spec.fsGroupPolicy: \"Files\" is not a policy; expected File, None or ReadWriteOnceWithFSType"),
        "{e}"
    );
}
