//! `volsec plan` on the fixtures: the security-context page's pods, and CSI pods with
//! CSIDriver and PersistentVolume examples. Each test states kubelet's answer.

use crate::common::{fixture_args, volsec_pod};
use serde_json::Value;
use std::process::Output;

/// The container defaults every test uses, so labels do not depend on the host.
const DEFAULTS: &str = "system_u:object_r:container_file_t:s0";
const LABEL: &str = "system_u:object_r:container_file_t:s0:c123,c456";

/// Runs `volsec plan --output json` with `--pod`, `--volume` and `extra`; the JSON plan.
fn plan(pod: &str, volume: &str, extra: &[&str]) -> Value {
    let out = volsec_pod(
        "plan",
        pod,
        volume,
        &["--output", "json", "--selinux-defaults", DEFAULTS],
    )
    .args(fixture_args(extra))
    .output()
    .expect("run volsec");
    assert!(
        out.status.success(),
        "volsec plan failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON plan")
}

fn action<'a>(plan: &'a Value, part: &str) -> &'a str {
    plan[part]["action"].as_str().unwrap()
}

fn reason(plan: &Value, part: &str) -> String {
    plan[part]["reason"].as_str().unwrap().to_string()
}

fn warnings(plan: &Value) -> Vec<String> {
    plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

// ---- the security-context page --------------------------------------------------------

#[test]
fn security_context_demo_walks_its_emptydir_and_has_the_page_s_groups() {
    let p = plan("pods/security-context.yaml", "sec-ctx-vol", &[]);
    assert_eq!(action(&p, "ownership"), "recursive");
    assert_eq!(p["ownership"]["fs_group"], 2000);
    assert_eq!(p["ownership"]["change_policy"], "Always");
    assert_eq!(p["ownership"]["read_only"], false);
    assert_eq!(action(&p, "selinux"), "none");
    assert!(reason(&p, "selinux").contains("SELinux is disabled"));
    let c = &p["containers"][0];
    assert_eq!(
        (c["uid"].as_i64(), c["gid"].as_i64()),
        (Some(1000), Some(3000))
    );
    // The page's `id`: uid=1000 gid=3000 groups=2000,3000,4000
    assert_eq!(c["groups"], serde_json::json!([2000, 3000, 4000]));
    assert_eq!(c["mounts_volume"], true);
}

#[test]
fn pods_without_volumes_are_refused_with_the_list() {
    for pod in [
        "pods/security-context-2.yaml",
        "pods/security-context-3.yaml",
        "pods/security-context-4.yaml",
    ] {
        let out = volsec_pod("plan", pod, "data", &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("field spec.volumes: the pod has no volume named \"data\"; it has none"),
            "{err}"
        );
    }
}

// ---- fsGroup through CSI ----------------------------------------------------------------

#[test]
fn on_root_mismatch_pod_on_a_rwo_volume_with_default_policy() {
    let p = plan(
        "pods/on-root-mismatch.yaml",
        "data",
        &["--pv", "@pv/rwo.yaml"],
    );
    assert_eq!(action(&p, "ownership"), "recursive");
    assert_eq!(p["ownership"]["change_policy"], "OnRootMismatch");
    let why = reason(&p, "ownership");
    assert!(
        why.contains("no CSIDriver given, so the default fsGroupPolicy ReadWriteOnceWithFSType"),
        "{why}"
    );
    assert!(
        why.contains("ReadWriteOnce volume with fsType ext4"),
        "{why}"
    );
    assert_eq!(p["pod"], "demo/on-root-mismatch");
    assert_eq!(p["volume"]["persistent_volume"], "pv-rwo");
}

#[test]
fn fs_group_policy_none_file_and_the_default() {
    let none = plan(
        "pods/on-root-mismatch.yaml",
        "data",
        &[
            "--pv",
            "@pv/rwo.yaml",
            "--csidriver",
            "@csidriver/none.yaml",
        ],
    );
    assert_eq!(action(&none, "ownership"), "unsupported");
    assert!(reason(&none, "ownership").contains("fsGroupPolicy None"));
    // File: whatever the access modes and fsType.
    for pv in [
        "@pv/rwx.yaml",
        "@pv/no-fstype.yaml",
        "@pv/no-access-modes.yaml",
    ] {
        let p = plan(
            "pods/on-root-mismatch.yaml",
            "data",
            &["--pv", pv, "--csidriver", "@csidriver/file.yaml"],
        );
        assert_eq!(action(&p, "ownership"), "recursive", "{pv}");
    }
    // ReadWriteOnceWithFSType, set explicitly or by default.
    for driver in [
        &["--csidriver", "@csidriver/rwo-fstype.yaml"][..],
        &["--csidriver", "@csidriver/selinux-false.yaml"][..],
        &[][..],
    ] {
        let with = |pv: &str| {
            let mut args = vec!["--pv", pv];
            args.extend_from_slice(driver);
            plan("pods/on-root-mismatch.yaml", "data", &args)
        };
        let rwx = with("@pv/rwx.yaml");
        assert_eq!(action(&rwx, "ownership"), "unsupported");
        assert!(reason(&rwx, "ownership").contains("access modes are [ReadWriteMany]"));
        let none = with("@pv/no-access-modes.yaml");
        assert_eq!(action(&none, "ownership"), "unsupported");
        assert!(reason(&none, "ownership").contains("the PersistentVolume sets none"));
        let nofs = with("@pv/no-fstype.yaml");
        assert_eq!(action(&nofs, "ownership"), "unsupported");
        assert!(reason(&nofs, "ownership").contains("needs an fsType"));
        assert_eq!(action(&with("@pv/rwop.yaml"), "ownership"), "recursive");
        assert_eq!(action(&with("@pv/rwo.yaml"), "ownership"), "recursive");
    }
}

#[test]
fn read_only_volumes_get_no_fs_group_even_with_file_policy() {
    let p = plan(
        "pods/on-root-mismatch.yaml",
        "data",
        &[
            "--pv",
            "@pv/read-only.yaml",
            "--csidriver",
            "@csidriver/file.yaml",
        ],
    );
    assert_eq!(action(&p, "ownership"), "unsupported");
    assert!(reason(&p, "ownership").contains("mounted read-only"));
    assert_eq!(p["volume"]["read_only"], true);
}

#[test]
fn read_write_once_pod_counts_only_from_1_32() {
    let old = plan(
        "pods/on-root-mismatch.yaml",
        "data",
        &["--pv", "@pv/rwop.yaml", "--kubernetes-version", "1.31"],
    );
    assert_eq!(action(&old, "ownership"), "unsupported");
    assert!(reason(&old, "ownership").contains("before 1.32"));
    let new = plan(
        "pods/on-root-mismatch.yaml",
        "data",
        &["--pv", "@pv/rwop.yaml", "--kubernetes-version", "1.32"],
    );
    assert_eq!(action(&new, "ownership"), "recursive");
}

#[test]
fn inline_csi_volumes_and_json_manifests() {
    let p = plan(
        "pods/csi-inline.json",
        "scratch",
        &["--selinux-enabled", "--csidriver", "@csidriver/file.yaml"],
    );
    assert_eq!(action(&p, "ownership"), "recursive");
    assert_eq!(p["volume"]["inline"], true);
    // Inline volumes never get -o context=, even from a driver with seLinuxMount: true.
    assert_eq!(action(&p, "selinux"), "relabel");
    assert!(reason(&p, "selinux").contains("inline"));
    assert_eq!(
        p["selinux"]["label"],
        "system_u:object_r:container_file_t:s0:c5,c6"
    );
    let token = plan("pods/csi-inline.json", "token", &[]);
    assert_eq!(action(&token, "ownership"), "unsupported");
    let inline_default = plan("pods/csi-inline.json", "scratch", &[]);
    assert!(reason(&inline_default, "ownership").contains("inline CSI volume"));
}

#[test]
fn atomic_writer_and_local_volumes() {
    let p = plan("pods/selinux-level.yaml", "config", &[]);
    assert_eq!(action(&p, "ownership"), "recursive");
    assert_eq!(p["ownership"]["read_only"], true);
    assert_eq!(p["ownership"]["change_policy"], "Always");
    let local = plan(
        "pods/on-root-mismatch.yaml",
        "data",
        &["--pv", "@pv/local.yaml"],
    );
    assert_eq!(action(&local, "ownership"), "recursive");
    assert_eq!(local["ownership"]["change_policy"], "OnRootMismatch");
    assert_eq!(local["volume"]["plugin"], "local");
}

#[test]
fn a_vfat_volume_never_skips_on_root_mismatch() {
    let p = plan(
        "pods/on-root-mismatch.yaml",
        "data",
        &["--pv", "@pv/vfat.yaml"],
    );
    assert_eq!(action(&p, "ownership"), "recursive");
    let w = warnings(&p);
    assert!(
        w.iter()
            .any(|w| w.contains("OnRootMismatch can never skip") && w.contains("vfat")),
        "{w:?}"
    );
}

#[test]
fn one_file_can_hold_pod_pv_and_driver() {
    let p = plan(
        "all-in-one.yaml",
        "data",
        &[
            "--pv",
            "@all-in-one.yaml",
            "--csidriver",
            "@all-in-one.yaml",
            "--selinux-enabled",
        ],
    );
    assert_eq!(action(&p, "ownership"), "recursive");
    assert_eq!(p["ownership"]["fs_group"], 3000);
    assert_eq!(action(&p, "selinux"), "mount_option");
    assert_eq!(
        p["selinux"]["mount_option"],
        "context=\"system_u:object_r:container_file_t:s0:c7,c8\""
    );
}

// ---- SELinux ------------------------------------------------------------------------------

fn selinux_plan(pod: &str, pv: &str, driver: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--selinux-enabled", "--pv", pv, "--csidriver", driver];
    args.extend_from_slice(extra);
    plan(pod, "data", &args)
}

/// `volsec plan` in text, SELinux enabled with the container defaults, for volume `data` of
/// `pod` with `extra` (`@REL`: a fixture); exit status unchecked.
fn selinux_plan_text(pod: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--selinux-enabled", "--selinux-defaults", DEFAULTS];
    args.extend_from_slice(extra);
    volsec_pod("plan", pod, "data", &args).output().unwrap()
}

#[test]
fn rwop_with_se_linux_mount_driver_is_mounted_with_the_label() {
    let p = selinux_plan(
        "pods/selinux-level.yaml",
        "@pv/rwop.yaml",
        "@csidriver/rwo-fstype.yaml",
        &[],
    );
    assert_eq!(action(&p, "selinux"), "mount_option");
    assert_eq!(p["selinux"]["label"], LABEL);
    assert_eq!(p["selinux"]["mount_option"], format!("context=\"{LABEL}\""));
    assert!(reason(&p, "selinux").contains("only access mode is ReadWriteOncePod"));
}

#[test]
fn rwo_is_relabeled_unless_se_linux_mount_is_on() {
    let p = selinux_plan(
        "pods/selinux-level.yaml",
        "@pv/rwo.yaml",
        "@csidriver/rwo-fstype.yaml",
        &[],
    );
    assert_eq!(action(&p, "selinux"), "relabel");
    assert_eq!(p["selinux"]["label"], LABEL);
    assert_eq!(p["selinux"]["mount_option"], Value::Null);
    let why = reason(&p, "selinux");
    assert!(
        why.contains("[ReadWriteOnce] are not exactly [ReadWriteOncePod]")
            && why.contains("SELinuxMount is off"),
        "{why}"
    );
    let on = selinux_plan(
        "pods/selinux-level.yaml",
        "@pv/rwx.yaml",
        "@csidriver/rwo-fstype.yaml",
        &["--feature-gates", "SELinuxMount=true"],
    );
    assert_eq!(action(&on, "selinux"), "mount_option");
    assert!(reason(&on, "selinux").contains("SELinuxMount is on"));
    assert_eq!(on["feature_gates"]["SELinuxMount"], true);
}

#[test]
fn drivers_without_se_linux_mount_are_relabeled() {
    let p = selinux_plan(
        "pods/selinux-level.yaml",
        "@pv/rwop.yaml",
        "@csidriver/selinux-false.yaml",
        &[],
    );
    assert_eq!(action(&p, "selinux"), "relabel");
    assert!(reason(&p, "selinux").contains("does not set seLinuxMount: true"));
    let p = plan(
        "pods/selinux-level.yaml",
        "data",
        &["--selinux-enabled", "--pv", "@pv/rwop.yaml"],
    );
    assert_eq!(action(&p, "selinux"), "relabel");
    assert!(reason(&p, "selinux").contains("seLinuxMount defaults to false"));
}

#[test]
fn selinux_mount_read_write_once_pod_by_release() {
    let old = selinux_plan(
        "pods/selinux-level.yaml",
        "@pv/rwop.yaml",
        "@csidriver/rwo-fstype.yaml",
        &["--kubernetes-version", "1.27"],
    );
    assert_eq!(action(&old, "selinux"), "relabel");
    assert!(reason(&old, "selinux").contains("SELinuxMountReadWriteOncePod is off"));
    let on = selinux_plan(
        "pods/selinux-level.yaml",
        "@pv/rwop.yaml",
        "@csidriver/rwo-fstype.yaml",
        &[
            "--kubernetes-version",
            "1.27",
            "--feature-gates",
            "SELinuxMountReadWriteOncePod=true",
        ],
    );
    assert_eq!(action(&on, "selinux"), "mount_option");
}

#[test]
fn se_linux_change_policy_recursive_opts_out() {
    let p = selinux_plan(
        "pods/selinux-recursive.yaml",
        "@pv/rwop.yaml",
        "@csidriver/rwo-fstype.yaml",
        &[],
    );
    assert_eq!(action(&p, "selinux"), "relabel");
    assert!(reason(&p, "selinux").contains("seLinuxChangePolicy: Recursive"));
    // Before SELinuxChangePolicy is on by default (1.33), the field is ignored.
    let old = selinux_plan(
        "pods/selinux-recursive.yaml",
        "@pv/rwop.yaml",
        "@csidriver/rwo-fstype.yaml",
        &["--kubernetes-version", "1.32"],
    );
    assert_eq!(action(&old, "selinux"), "mount_option");
}

#[test]
fn two_labels_for_one_mounted_volume_are_refused() {
    let out = selinux_plan_text(
        "pods/two-labels.yaml",
        &[
            "--pv",
            "@pv/rwop.yaml",
            "--csidriver",
            "@csidriver/rwo-fstype.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("two-labels.yaml: multiple SELinux labels found for volume \"data\""),
        "{err}"
    );
    assert!(
        err.contains("writer wants system_u:object_r:container_file_t:s0:c1,c2"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn two_labels_for_one_relabeled_volume_warn() {
    let p = selinux_plan(
        "pods/two-labels.yaml",
        "@pv/rwo.yaml",
        "@csidriver/rwo-fstype.yaml",
        &[],
    );
    assert_eq!(action(&p, "selinux"), "none");
    let w = warnings(&p);
    assert!(
        w.iter()
            .any(|w| w.contains("different SELinux labels") && w.contains("reader wants")),
        "{w:?}"
    );
    let reader = p["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "reader")
        .unwrap();
    assert_eq!(reader["mount_read_only"], true);
}

#[test]
fn a_privileged_container_sharing_a_label_mounted_volume_warns() {
    let p = selinux_plan(
        "pods/privileged-sidecar.yaml",
        "@pv/rwop.yaml",
        "@csidriver/rwo-fstype.yaml",
        &[],
    );
    assert_eq!(action(&p, "selinux"), "mount_option");
    let w = warnings(&p);
    assert!(
        w.iter()
            .any(|w| w.contains("\"backup\" is privileged") && w.contains("spc_t")),
        "{w:?}"
    );
    let kinds: Vec<&str> = p["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["init", "container", "container"]);
}

#[test]
fn options_without_a_level_leave_the_label_to_the_runtime() {
    let p = selinux_plan(
        "pods/no-level.yaml",
        "@pv/rwop.yaml",
        "@csidriver/rwo-fstype.yaml",
        &[],
    );
    assert_eq!(action(&p, "selinux"), "none");
    assert!(reason(&p, "selinux").contains("without a level"));
}

#[test]
fn no_se_linux_options_at_all() {
    let p = selinux_plan(
        "pods/on-root-mismatch.yaml",
        "@pv/rwop.yaml",
        "@csidriver/rwo-fstype.yaml",
        &[],
    );
    assert_eq!(action(&p, "selinux"), "none");
    assert!(reason(&p, "selinux").contains("random MCS label"));
}

#[test]
fn text_output_explains_both_decisions() {
    let out = selinux_plan_text("pods/selinux-level.yaml", &["--pv", "@pv/rwo.yaml"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ownership: recursive (fsGroup 2000, Always)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("selinux: relabel ({LABEL})")),
        "{text}"
    );
    assert!(text.contains("  why: "), "{text}");
}

#[test]
fn only_privileged_containers_get_no_relabel() {
    let p = selinux_plan(
        "pods/privileged-only.yaml",
        "@pv/rwo.yaml",
        "@csidriver/rwo-fstype.yaml",
        &[],
    );
    assert_eq!(action(&p, "selinux"), "none");
    assert!(reason(&p, "selinux")
        .contains("is privileged, for which the container runtime does not relabel"));
    // With -o context= the mount labels it anyway, and the warning says what that means.
    let m = selinux_plan(
        "pods/privileged-only.yaml",
        "@pv/rwop.yaml",
        "@csidriver/rwo-fstype.yaml",
        &[],
    );
    assert_eq!(action(&m, "selinux"), "mount_option");
    assert!(warnings(&m)
        .iter()
        .any(|w| w.contains("\"node-agent\" is privileged")));
}

#[test]
fn unused_volumes_and_raw_block_devices_get_nothing() {
    let spare = plan(
        "pods/unused-and-block.yaml",
        "spare",
        &["--selinux-enabled"],
    );
    assert_eq!(action(&spare, "ownership"), "unsupported");
    assert!(reason(&spare, "ownership").contains("no container of the pod uses volume \"spare\""));
    assert_eq!(action(&spare, "selinux"), "none");
    let block = plan(
        "pods/unused-and-block.yaml",
        "data",
        &["--pv", "@pv/rwo.yaml", "--selinux-enabled"],
    );
    assert_eq!(action(&block, "ownership"), "unsupported");
    assert!(reason(&block, "ownership").contains("raw block device"));
    assert_eq!(action(&block, "selinux"), "none");
}
