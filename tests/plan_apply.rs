//! `volsec plan --path` (kubelet's OnRootMismatch test on a real root) and
//! `volsec apply --pod` running the plan on tmpfs, with real `security.selinux` xattrs.

use crate::common::{
    assert_success, gid_mode, mkdir, success_json, volsec_pod, write_file, Mounted,
};
use serde_json::Value;
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Output;

const DEFAULTS: &str = "system_u:object_r:container_file_t:s0";
const LABEL: &str = "system_u:object_r:container_file_t:s0:c123,c456";

fn plan_path(root: &Path) -> Value {
    let out = volsec_pod(
        "plan",
        "pods/on-root-mismatch.yaml",
        "data",
        &["--output", "json", "--pv", "@pv/rwo.yaml", "--path"],
    )
    .arg(root)
    .output()
    .unwrap();
    success_json(&out)
}

/// `volsec apply --quiet` of the selinux-level pod's volume `data` on `root`, SELinux
/// enabled with the container defaults, and `extra` (`@REL`: a fixture).
fn apply_selinux_level(root: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--quiet",
        "--selinux-enabled",
        "--selinux-defaults",
        DEFAULTS,
    ];
    args.extend_from_slice(extra);
    volsec_pod("apply", "pods/selinux-level.yaml", "data", &args)
        .arg(root)
        .output()
        .unwrap()
}

fn label_of(path: &Path) -> Option<String> {
    let v = xattr::get(path, "security.selinux").expect("getxattr")?;
    Some(
        String::from_utf8(v)
            .unwrap()
            .trim_end_matches('\0')
            .to_string(),
    )
}

#[test]
fn on_root_mismatch_skips_a_matching_root() {
    let m = Mounted::tmpfs();
    let root = m.subdir("vol");
    chown(&root, None, Some(2000)).unwrap();
    mkdir(&root, 0o2770);
    let p = plan_path(&root);
    assert_eq!(p["ownership"]["action"], "skip");
    assert!(p["ownership"]["reason"]
        .as_str()
        .unwrap()
        .contains("already has group 2000, setgid"));
    assert!(p["warnings"].as_array().unwrap().is_empty());
}

#[test]
fn a_root_that_lost_setgid_warns_that_it_never_skips() {
    let m = Mounted::tmpfs();
    let root = m.subdir("vol");
    chown(&root, None, Some(2000)).unwrap();
    mkdir(&root, 0o0770);
    let p = plan_path(&root);
    assert_eq!(p["ownership"]["action"], "recursive");
    let w = p["warnings"][0].as_str().unwrap();
    assert!(
        w.contains("OnRootMismatch can never skip") && w.contains("no setgid"),
        "{w}"
    );
}

#[test]
fn a_foreign_root_is_walked() {
    let m = Mounted::tmpfs();
    let root = m.subdir("vol");
    let p = plan_path(&root);
    assert_eq!(p["ownership"]["action"], "recursive");
    assert!(p["warnings"].as_array().unwrap().is_empty());
}

#[test]
fn apply_runs_the_security_context_demo_plan() {
    let m = Mounted::tmpfs();
    let root = m.subdir("vol");
    mkdir(&root.join("sub"), 0o755);
    write_file(&root.join("sub/file"), 0o644);
    let out = volsec_pod(
        "apply",
        "pods/security-context.yaml",
        "sec-ctx-vol",
        &["--quiet"],
    )
    .arg(&root)
    .output()
    .unwrap();
    assert_success(&out);
    // The page: drwxrwsrwx root 2000 /data/demo; files group 2000.
    assert_eq!(gid_mode(&root), (2000, 0o2775));
    assert_eq!(gid_mode(&root.join("sub")), (2000, 0o2775));
    assert_eq!(gid_mode(&root.join("sub/file")), (2000, 0o664));
}

#[test]
fn apply_relabels_and_chowns_in_one_pass() {
    let m = Mounted::tmpfs();
    let root = m.subdir("vol");
    write_file(&root.join("file"), 0o600);
    let out = apply_selinux_level(&root, &["--pv", "@pv/rwo.yaml"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("selinux: relabel"), "{text}");
    assert_eq!(gid_mode(&root.join("file")), (2000, 0o660));
    assert_eq!(label_of(&root.join("file")).as_deref(), Some(LABEL));
    assert_eq!(label_of(&root).as_deref(), Some(LABEL));
}

#[test]
fn apply_leaves_the_label_to_the_mount_option() {
    let m = Mounted::tmpfs();
    let root = m.subdir("vol");
    write_file(&root.join("file"), 0o600);
    let out = apply_selinux_level(
        &root,
        &[
            "--pv",
            "@pv/rwop.yaml",
            "--csidriver",
            "@csidriver/rwo-fstype.yaml",
        ],
    );
    assert_success(&out);
    assert_eq!(gid_mode(&root.join("file")), (2000, 0o660));
    assert_ne!(
        label_of(&root.join("file")).as_deref(),
        Some(LABEL),
        "kubelet's mount applies the label, not a relabel"
    );
}

#[test]
fn apply_says_why_there_is_nothing_to_do() {
    let m = Mounted::tmpfs();
    let root = m.subdir("vol");
    write_file(&root.join("file"), 0o600);
    let before = gid_mode(&root.join("file"));
    let out = volsec_pod(
        "apply",
        "pods/on-root-mismatch.yaml",
        "data",
        &[
            "--output",
            "json",
            "--pv",
            "@pv/rwo.yaml",
            "--csidriver",
            "@csidriver/none.yaml",
        ],
    )
    .arg(&root)
    .output()
    .unwrap();
    let v = success_json(&out);
    assert_eq!(v["outcome"], "nothing_to_do");
    assert_eq!(v["ownership"]["action"], "unsupported");
    assert!(v["ownership"]["reason"]
        .as_str()
        .unwrap()
        .contains("fsGroupPolicy None"));
    assert_eq!(v["selinux"]["action"], "none");
    assert_eq!(gid_mode(&root.join("file")), before);
}
