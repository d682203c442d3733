//! The `O_PATH` + `/proc/self/fd` route (kernels before 6.6 for `fchmodat2`, before 6.13 for
//! `getxattrat`/`setxattrat`) gives exactly the results of the native calls. The route is
//! forced with `VOLSEC_FORCE_FALLBACK=1`, so it stays tested on new kernels too.

use crate::common::*;
use std::path::Path;

const LABEL: &str = "system_u:object_r:container_file_t:s0:c1,c2";

fn build(vol: &Path, outside: &Path) {
    mkdir(&vol.join("d/e"), 0o700);
    write_file(&vol.join("d/f"), 0o600);
    write_file(&vol.join("d/e/exe"), 0o4750);
    write_file(&outside.join("target"), 0o600);
    std::os::unix::fs::symlink(outside.join("target"), vol.join("d/link")).unwrap();
}

fn apply(vol: &Path, fallback: bool) {
    let mut cmd = volsec();
    cmd.args([
        "apply",
        "--fs-group",
        "3000",
        "--selinux-context",
        LABEL,
        "--quiet",
    ])
    .arg(vol);
    if fallback {
        cmd.env("VOLSEC_FORCE_FALLBACK", "1");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn state(vol: &Path) -> Vec<(String, u32, u32, Option<Vec<u8>>)> {
    all_paths(vol)
        .into_iter()
        .map(|p| {
            let (gid, mode) = gid_mode(&p);
            let label = xattr::get_deref(&p, "security.selinux").ok().flatten();
            let label = if std::fs::symlink_metadata(&p).unwrap().is_symlink() {
                xattr::get(&p, "security.selinux").ok().flatten()
            } else {
                label
            };
            let rel = p.strip_prefix(vol).unwrap().display().to_string();
            (rel, gid, mode, label)
        })
        .collect()
}

#[test]
fn fallback_route_gives_the_native_result() {
    let fs = Mounted::tmpfs();
    let (native, fallback, outside) = (
        fs.subdir("native"),
        fs.subdir("fallback"),
        fs.subdir("outside"),
    );
    let outside_native = fs.subdir("outside/native");
    build(&native, &outside_native);
    build(&fallback, &outside);
    apply(&native, false);
    apply(&fallback, true);
    assert_eq!(state(&native), state(&fallback));
    // Symlinks were labelled and chowned themselves; their targets were not touched.
    assert_eq!(gid_mode(&outside.join("target")), (0, 0o600));
    assert_eq!(
        xattr::get(outside.join("target"), "security.selinux").unwrap(),
        None
    );
    let link_label = xattr::get(fallback.join("d/link"), "security.selinux").unwrap();
    assert_eq!(link_label.as_deref(), Some(LABEL.as_bytes()));
}

/// Without `/proc` the fallback route cannot reach a pinned entry. That is a failure of
/// the pass (root left unchanged), never an entry that "vanished" and may be passed over.
#[test]
fn without_proc_the_fallback_route_fails_instead_of_skipping() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    write_file(&vol.join("f"), 0o644);
    let root_before = gid_mode(&vol);
    let script = format!(
        "mount -t tmpfs none /proc && exec {} apply --fs-group 2000 --output json {}",
        env!("CARGO_BIN_EXE_volsec"),
        vol.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("VOLSEC_FORCE_FALLBACK", "1")
        .output()
        .expect("unshare (util-linux) gives the pass a mount namespace without /proc");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["vanished"], 0, "{report}");
    assert!(report["errors"].to_string().contains("/proc"), "{report}");
    assert_eq!(
        gid_mode(&vol),
        root_before,
        "the root is left for the next pass"
    );
}
