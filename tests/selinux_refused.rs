//! The refused-root matrix: system directories, however they are reached, and `$HOME` are
//! refused before anything is read or written (exit status 2, one message naming the path).

use crate::common::*;
use std::path::Path;
use std::process::Output;

const LABEL: &str = "system_u:object_r:container_file_t:s0:c1,c2";

/// What a pass would change on `path`: its label, group and mode. (Not ctime: other
/// processes create files in `/tmp` and `/` all the time.)
fn fingerprint(path: &Path) -> (Option<Vec<u8>>, (u32, u32)) {
    let mut buf = vec![0u8; 1024];
    let label = rustix::fs::lgetxattr(path, "security.selinux", &mut buf)
        .ok()
        .map(|n| buf[..n].to_vec());
    (label, gid_mode(path))
}

fn assert_refused(out: &Output, path: &str, why: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{path}: {stderr}");
    assert!(
        stderr.contains(path) && stderr.contains(why),
        "{path}: {stderr:?} lacks {why:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "{path}: one message: {stderr}");
}

fn relabel(path: &Path) -> Output {
    volsec()
        .args(["relabel", "--context", LABEL])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn system_directories_are_refused_however_reached() {
    require_root();
    let links = tempfile::tempdir().unwrap();
    let to_etc = links.path().join("to-etc");
    std::os::unix::fs::symlink("/etc", &to_etc).unwrap();
    let to_var = links.path().join("to-var");
    std::os::unix::fs::symlink("/var", &to_var).unwrap();
    let to_var_lib = to_var.join("lib");
    let cases: [(&Path, &str); 8] = [
        (
            Path::new("/"),
            "refusing to change a system directory (it is /)",
        ),
        (
            Path::new("/etc"),
            "refusing to change a system directory (it is /etc)",
        ),
        (Path::new("/etc/"), "(it is /etc)"),
        (Path::new("/var/../etc"), "(it is /etc)"),
        (Path::new("/usr/../var/lib"), "(it is /var/lib)"),
        (Path::new("/tmp"), "(it is /tmp)"),
        (&to_etc, "a symlink is on the path"),
        (&to_var_lib, "a symlink is on the path"),
    ];
    let watched = [
        Path::new("/"),
        Path::new("/etc"),
        Path::new("/var/lib"),
        Path::new("/tmp"),
    ];
    for (path, why) in cases {
        let before: Vec<_> = watched.iter().map(|p| fingerprint(p)).collect();
        assert_refused(&relabel(path), &path.to_string_lossy(), why);
        let out = volsec()
            .args(["apply", "--fs-group", "2000"])
            .arg(path)
            .output()
            .unwrap();
        assert_refused(&out, &path.to_string_lossy(), why);
        let after: Vec<_> = watched.iter().map(|p| fingerprint(p)).collect();
        assert_eq!(
            after,
            before,
            "refusing {} changed something",
            path.display()
        );
    }
}

#[test]
fn home_is_refused_and_a_directory_below_tmp_is_not() {
    let fs = Mounted::tmpfs();
    let home = fs.subdir("home/alice");
    write_file(&home.join("notes"), 0o600);
    let before = fingerprint(&home.join("notes"));
    let out = volsec()
        .env("HOME", &home)
        .args(["relabel", "--context", LABEL])
        .arg(&home)
        .output()
        .unwrap();
    assert_refused(&out, &home.to_string_lossy(), "(it is $HOME, ");
    // Reached another way, by identity.
    let other_way = fs.path().join("home/alice/../alice");
    let out = volsec()
        .env("HOME", &home)
        .args(["relabel", "--context", LABEL])
        .arg(&other_way)
        .output()
        .unwrap();
    assert_refused(&out, &other_way.to_string_lossy(), "(it is $HOME, ");
    assert_eq!(fingerprint(&home.join("notes")), before);

    // The same directory is an ordinary volume for another $HOME (and it lies below /tmp,
    // which is refused only itself).
    let out = volsec()
        .env("HOME", "/root")
        .args(["relabel", "--quiet", "--context", LABEL])
        .arg(&home)
        .output()
        .unwrap();
    assert_success(&out);
}
