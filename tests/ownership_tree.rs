//! `volsec apply` on a tree with every kind of entry a container can leave in a volume:
//! files, directories, symlinks inside and pointing outside the volume (and dangling),
//! FIFOs, sockets, setuid/setgid executables, hard links, device nodes. Checks kubelet's
//! final state entry by entry, that nothing outside the volume changes, that nothing is
//! opened that must not be (a FIFO with no writer would block the pass forever), that a
//! second pass writes nothing, and that `--dry-run` writes nothing and counts right.
//!
//! Each case runs on a fresh tmpfs and on a fresh loop-mounted ext4 image.

use crate::common::*;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Size of the ext4 image every case on ext4 runs on.
const EXT4_MIB: u64 = 32;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// A device node. Major 240 is reserved for local/experimental use: no driver answers it, so
/// opening the node would fail with ENXIO and show up as a failure.
fn mknod(p: &Path, kind: libc::mode_t, mode: u32) {
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::mknod(cpath(p).as_ptr(), kind | mode, libc::makedev(240, 7)) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// uid, gid, mode (type included) and ctime of an entry, not following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Attrs {
    uid: u32,
    gid: u32,
    mode: u32,
    ctime_ns: i128,
    ino: u64,
}

fn attrs(p: &Path) -> Attrs {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    Attrs {
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode(),
        ctime_ns: ctime_ns(p),
        ino: m.ino(),
    }
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Attrs> {
    all_paths(root)
        .into_iter()
        .map(|p| (p.clone(), attrs(&p)))
        .collect()
}

/// kubelet's result for an entry that had `mode` before (volume_linux.go, semantics §1).
fn kubelet_mode(mode: u32, read_only: bool) -> Option<u32> {
    let base = if read_only { 0o440 } else { 0o660 };
    match mode & libc::S_IFMT {
        libc::S_IFLNK => None,
        libc::S_IFDIR => Some(mode & 0o7777 | base | 0o110 | 0o2000),
        _ => Some(mode & 0o7777 | base),
    }
}

/// The volume and a directory beside it that symlinks in the volume point at.
struct Tree {
    _fs: Mounted,
    vol: PathBuf,
    outside: PathBuf,
}

/// Builds the tree of every entry kind. The socket is bound and closed: its inode stays.
fn build_tree(fs: Fs) -> Tree {
    let mounted = fs.mount(EXT4_MIB);
    let vol = mounted.subdir("vol");
    let outside = mounted.subdir("outside");
    mkdir(&vol, 0o755);
    write_file(&outside.join("secret"), 0o600);
    mkdir(&outside.join("dir"), 0o700);
    write_file(&outside.join("dir/inner"), 0o600);
    mkfifo(&outside.join("fifo"), 0o600);

    mkdir(&vol.join("dir/sub"), 0o700);
    mkdir(&vol.join("dir"), 0o755);
    write_file(&vol.join("dir/file"), 0o644);
    write_file(&vol.join("dir/private"), 0o600);
    write_file(&vol.join("dir/sub/deep"), 0o640);
    mkdir(&vol.join("empty"), 0o500);
    mkdir(&vol.join("sticky"), 0o1777);
    write_file(&vol.join("readonly"), 0o400);
    write_file(&vol.join("owned_by_1234"), 0o644);
    std::os::unix::fs::lchown(vol.join("owned_by_1234"), Some(1234), Some(55)).unwrap();
    // setuid/setgid executables: chown(2) clears these bits, kubelet puts them back.
    write_file(&vol.join("suid"), 0o4755);
    write_file(&vol.join("sgid"), 0o2755);
    write_file(&vol.join("suid_sgid"), 0o6711);
    write_file(&vol.join("sgid_noexec"), 0o2644);
    write_file(&vol.join("dir/sub/suid_deep"), 0o4700);
    // Symlinks: inside, to outside files / directories / a FIFO, dangling, absolute and relative.
    std::os::unix::fs::symlink("dir/file", vol.join("link_in")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), vol.join("link_out_file")).unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), vol.join("link_out_dir")).unwrap();
    std::os::unix::fs::symlink("../../outside/dir", vol.join("dir/link_out_rel")).unwrap();
    std::os::unix::fs::symlink(outside.join("fifo"), vol.join("link_out_fifo")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", vol.join("dangling")).unwrap();
    // Special files, never to be opened.
    mkfifo(&vol.join("fifo"), 0o644);
    mkfifo(&vol.join("dir/sub/fifo"), 0o600);
    mknod(&vol.join("chardev"), libc::S_IFCHR, 0o600);
    mknod(&vol.join("dir/blockdev"), libc::S_IFBLK, 0o640);
    let sock = std::os::unix::net::UnixListener::bind(vol.join("sock")).unwrap();
    drop(sock);
    std::fs::set_permissions(
        vol.join("sock"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // Hard links: one inode, two names in two directories.
    write_file(&vol.join("hard1"), 0o604);
    std::fs::hard_link(vol.join("hard1"), vol.join("dir/hard2")).unwrap();
    Tree {
        _fs: mounted,
        vol,
        outside,
    }
}

/// Checks kubelet's result on every entry against the attributes it had before.
fn assert_kubelet_result(
    fs: Fs,
    before: &BTreeMap<PathBuf, Attrs>,
    after: &BTreeMap<PathBuf, Attrs>,
    read_only: bool,
) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{fs:?}: the set of entries must not change"
    );
    for (path, b) in before {
        let a = after[path];
        let want_mode =
            kubelet_mode(b.mode, read_only).map_or(b.mode, |m| b.mode & libc::S_IFMT | m);
        assert_eq!(
            (a.uid, a.gid, a.mode, a.ino),
            (b.uid, FS_GROUP, want_mode, b.ino),
            "{fs:?}: {}: (uid, gid, mode, ino) before {:?}: want uid untouched, gid {FS_GROUP}, \
             mode {want_mode:o}",
            path.display(),
            (b.uid, b.gid, format!("{:o}", b.mode), b.ino),
        );
    }
}

fn assert_unchanged(fs: Fs, what: &str, before: &BTreeMap<PathBuf, Attrs>) {
    for (path, b) in before {
        assert_eq!(
            attrs(path),
            *b,
            "{fs:?}: {what}: {} changed (uid, gid, mode or ctime)",
            path.display()
        );
    }
}

fn every_kind_gets_kubelets_result(fs: Fs) {
    every_kind_on_route(fs, &[]);
}

/// The same on the O_PATH + /proc/self/fd route volsec takes on kernels without
/// `fchmodat2` (before 6.6) and `*xattrat` (before 6.13).
fn every_kind_on_the_fallback_route(fs: Fs) {
    every_kind_on_route(fs, &[("VOLSEC_FORCE_FALLBACK", "1")]);
}

fn every_kind_on_route(fs: Fs, env: &[(&str, &str)]) {
    let tree = build_tree(fs);
    let outside_before = snapshot(&tree.outside);
    let before = snapshot(&tree.vol);

    let (code, report) = apply_json_env(&tree.vol, &[], env);

    assert_eq!(
        code, 0,
        "{fs:?}: exit code of a clean pass; report: {report}"
    );
    assert_eq!(count(&report, "failed"), 0, "{fs:?}: {report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{fs:?}");
    assert_eq!(
        count(&report, "visited"),
        before.len() as u64,
        "{fs:?}: every entry (root included, hard links once per name) is visited once"
    );
    let after = snapshot(&tree.vol);
    assert_kubelet_result(fs, &before, &after, false);
    // Spot checks of the rules that are easy to get wrong.
    let v = &tree.vol;
    assert_eq!(gid_mode(v), (FS_GROUP, 0o2775), "{fs:?}: root");
    assert_eq!(
        gid_mode(&v.join("suid")),
        (FS_GROUP, 0o4775),
        "{fs:?}: setuid restored"
    );
    assert_eq!(
        gid_mode(&v.join("sgid")),
        (FS_GROUP, 0o2775),
        "{fs:?}: setgid restored"
    );
    assert_eq!(
        gid_mode(&v.join("suid_sgid")),
        (FS_GROUP, 0o6771),
        "{fs:?}: both restored"
    );
    assert_eq!(
        gid_mode(&v.join("dir/sub/suid_deep")),
        (FS_GROUP, 0o4760),
        "{fs:?}"
    );
    assert_eq!(
        gid_mode(&v.join("sticky")),
        (FS_GROUP, 0o3777),
        "{fs:?}: sticky kept"
    );
    assert_eq!(
        gid_mode(&v.join("empty")),
        (FS_GROUP, 0o2770),
        "{fs:?}: 0500 | 02770"
    );
    assert_eq!(
        gid_mode(&v.join("fifo")),
        (FS_GROUP, 0o664),
        "{fs:?}: a FIFO is chmodded"
    );
    assert_eq!(
        gid_mode(&v.join("chardev")),
        (FS_GROUP, 0o660),
        "{fs:?}: char device"
    );
    assert_eq!(
        gid_mode(&v.join("dir/blockdev")),
        (FS_GROUP, 0o660),
        "{fs:?}: block device"
    );
    assert_eq!(
        gid_mode(&v.join("sock")),
        (FS_GROUP, 0o775),
        "{fs:?}: socket"
    );
    assert_eq!(
        gid_mode(&v.join("hard1")),
        (FS_GROUP, 0o664),
        "{fs:?}: hard link"
    );
    let owned = std::fs::symlink_metadata(v.join("owned_by_1234")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid()),
        (1234, FS_GROUP),
        "{fs:?}: uid untouched"
    );
    for link in [
        "link_in",
        "link_out_file",
        "link_out_dir",
        "dir/link_out_rel",
        "dangling",
    ] {
        let m = std::fs::symlink_metadata(v.join(link)).unwrap();
        assert!(
            m.file_type().is_symlink(),
            "{fs:?}: {link} is still a symlink"
        );
        assert_eq!(m.gid(), FS_GROUP, "{fs:?}: {link} gets the group itself");
    }
    assert_unchanged(
        fs,
        "outside the volume, reached only through symlinks",
        &outside_before,
    );
}

fn second_pass_writes_nothing(fs: Fs) {
    let tree = build_tree(fs);
    let (code, first) = apply_json(&tree.vol, &[]);
    assert_eq!(code, 0, "{fs:?}: first pass: {first}");
    assert!(
        count(&first, "changed") > 0,
        "{fs:?}: the first pass has work to do"
    );
    let before = snapshot(&tree.vol);
    // Past the filesystem's timestamp granularity: any write now would move a ctime.
    std::thread::sleep(Duration::from_millis(20));

    let (code, second) = apply_json(&tree.vol, &[]);

    assert_eq!(code, 0, "{fs:?}: second pass: {second}");
    assert_eq!(
        count(&second, "changed"),
        0,
        "{fs:?}: nothing left to change: {second}"
    );
    assert_eq!(count(&second, "failed"), 0, "{fs:?}: {second}");
    assert_eq!(
        count(&second, "visited"),
        before.len() as u64,
        "{fs:?}: {second}"
    );
    assert_eq!(
        count(&second, "unchanged"),
        before.len() as u64,
        "{fs:?}: every entry, the root included, was already right: {second}"
    );
    assert_unchanged(fs, "a second pass must write nothing", &before);
}

fn dry_run_changes_nothing_and_counts(fs: Fs) {
    let tree = build_tree(fs);
    let before = snapshot(&tree.vol);
    let outside_before = snapshot(&tree.outside);
    let needing_change = before
        .values()
        .filter(|a| {
            a.gid != FS_GROUP || kubelet_mode(a.mode, false).is_some_and(|m| m != a.mode & 0o7777)
        })
        .count() as u64;
    std::thread::sleep(Duration::from_millis(20));

    let (code, dry) = apply_json(&tree.vol, &["--dry-run"]);

    assert_eq!(code, 0, "{fs:?}: {dry}");
    assert_eq!(dry["dry_run"], serde_json::json!(true), "{fs:?}: {dry}");
    assert_unchanged(fs, "--dry-run must write nothing", &before);
    assert_unchanged(fs, "--dry-run outside the volume", &outside_before);
    assert_eq!(
        count(&dry, "changed"),
        needing_change,
        "{fs:?}: --dry-run counts every entry that would change: {dry}"
    );
    assert_eq!(count(&dry, "visited"), before.len() as u64, "{fs:?}: {dry}");

    // The real pass then changes what the dry run announced (hard links aside: the second
    // name of an inode may already be right when it is reached, so it can count 1 less).
    let (code, real) = apply_json(&tree.vol, &[]);
    assert_eq!(code, 0, "{fs:?}: {real}");
    let changed = count(&real, "changed");
    assert!(
        changed == needing_change || changed + 1 == needing_change,
        "{fs:?}: dry run announced {needing_change}, the pass changed {changed}"
    );
    assert_kubelet_result(fs, &before, &snapshot(&tree.vol), false);
}

fn read_only_masks(fs: Fs) {
    let tree = build_tree(fs);
    let before = snapshot(&tree.vol);

    let (code, report) = apply_json(&tree.vol, &["--read-only"]);

    assert_eq!(code, 0, "{fs:?}: {report}");
    assert_eq!(
        report["read_only"],
        serde_json::json!(true),
        "{fs:?}: {report}"
    );
    assert_kubelet_result(fs, &before, &snapshot(&tree.vol), true);
    let v = &tree.vol;
    assert_eq!(gid_mode(v), (FS_GROUP, 0o2755), "{fs:?}: 0755 | 02550");
    assert_eq!(
        gid_mode(&v.join("dir/sub")),
        (FS_GROUP, 0o2750),
        "{fs:?}: 0700 | 02550"
    );
    assert_eq!(
        gid_mode(&v.join("readonly")),
        (FS_GROUP, 0o440),
        "{fs:?}: 0400 | 0440"
    );
    assert_eq!(
        gid_mode(&v.join("dir/private")),
        (FS_GROUP, 0o640),
        "{fs:?}: 0600 | 0440"
    );
    assert_eq!(
        gid_mode(&v.join("suid")),
        (FS_GROUP, 0o4755),
        "{fs:?}: setuid restored"
    );
}

fn fifo_without_writer_does_not_block(fs: Fs) {
    // A volume of nothing but FIFOs nobody writes to, at several depths, and the root's
    // only subdirectory reached through them: opening any of them O_RDONLY would block.
    let mounted = fs.mount(EXT4_MIB);
    let vol = mounted.subdir("vol");
    mkdir(&vol.join("a/b/c"), 0o755);
    for (i, dir) in ["", "a", "a/b", "a/b/c"].iter().enumerate() {
        for j in 0..5 {
            mkfifo(&vol.join(dir).join(format!("fifo{i}{j}")), 0o600);
        }
    }
    let started = std::time::Instant::now();

    let (code, report) = apply_json(&vol, &[]);

    assert_eq!(code, 0, "{fs:?}: {report}");
    assert_eq!(
        count(&report, "visited"),
        24,
        "{fs:?}: 20 FIFOs, 3 dirs and the root"
    );
    assert_eq!(
        gid_mode(&vol.join("a/b/c/fifo34")),
        (FS_GROUP, 0o660),
        "{fs:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{fs:?}: 20 FIFOs took {:?}",
        started.elapsed()
    );
}

on_tmpfs_and_ext4!(
    every_kind_gets_kubelets_result,
    every_kind_on_the_fallback_route,
    second_pass_writes_nothing,
    dry_run_changes_nothing_and_counts,
    read_only_masks,
    fifo_without_writer_does_not_block,
);

fn root_last(fs: Fs) {
    // kubelet's walk is post-order; only the root's place in that order changes anything
    // (it is the OnRootMismatch marker), and volsec keeps it last: every other entry's final
    // state depends only on its own attributes, so directories below the root are changed as
    // soon as they are opened (see src/walk/mod.rs). ctime records when each inode changed:
    // no inode below the root may have changed after it.
    let mounted = fs.mount(EXT4_MIB);
    let vol = mounted.subdir("vol");
    for a in 0..6 {
        for b in 0..6 {
            let d = vol.join(format!("a{a}/b{b}"));
            mkdir(&d, 0o755);
            for f in 0..10 {
                write_file(&d.join(format!("f{f}")), 0o644);
            }
        }
    }
    let (code, report) = apply_json(&vol, &["--threads", "2"]);
    assert_eq!(code, 0, "{fs:?}: {report}");

    let root_ctime = ctime_ns(&vol);
    for path in all_paths(&vol).into_iter().filter(|p| p != &vol) {
        assert!(
            ctime_ns(&path) <= root_ctime,
            "{fs:?}: {} was changed after the root",
            path.display()
        );
    }
}

on_tmpfs_and_ext4!(root_last);
