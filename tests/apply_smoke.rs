//! End-to-end: `volsec apply` on a small tree in a fresh tmpfs.

use crate::common::*;

#[test]
fn apply_gives_kubelets_modes_and_leaves_symlink_targets_alone() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    let outside = fs.subdir("outside");
    write_file(&outside.join("secret"), 0o600);
    mkdir(&vol.join("a/b"), 0o755);
    write_file(&vol.join("a/f"), 0o644);
    write_file(&vol.join("a/b/exe"), 0o4755);
    std::os::unix::fs::symlink(outside.join("secret"), vol.join("link")).unwrap();

    let out = volsec()
        .args(["apply", "--fs-group", "2000"])
        .arg(&vol)
        .output()
        .unwrap();
    assert_success(&out);

    assert_eq!(gid_mode(&vol), (2000, 0o2775));
    assert_eq!(gid_mode(&vol.join("a")), (2000, 0o2775));
    assert_eq!(gid_mode(&vol.join("a/f")), (2000, 0o664));
    assert_eq!(gid_mode(&vol.join("a/b/exe")), (2000, 0o4775));
    assert_eq!(gid_mode(&vol.join("link")).0, 2000);
    assert_eq!(gid_mode(&outside.join("secret")), (0, 0o600));
}
