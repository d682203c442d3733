//! Mounts appear and vanish over names inside the volume while passes run: a host process
//! (or a privileged container with bidirectional mount propagation) bind-mounts a file and
//! a directory from OUTSIDE the volume over entries of it, unmounts them, and again, as
//! fast as it can. Each of the three pass kinds (ownership, relabel, fused) runs round
//! after round on every route: in a private mount namespace (the default as root), without
//! one (every write through an entry pinned on the root's mount), and without one on the
//! fallback syscall route (`O_PATH` + `/proc/self/fd`, `openat` instead of `openat2`).
//!
//! Outside, the bind sources sit with gid 0, modes without group bits and no label.
//! Nothing there may ever change: uid, gid, mode, ctime and `security.selinux` are
//! compared after every round (ctime catches even a write that was put back).

use crate::common::*;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Passes per pass kind and route.
const ROUNDS: usize = 12;

/// The routes a pass can take, as environments of the binary.
const ROUTES: [(&str, &[(&str, &str)]); 3] = [
    ("private mount namespace", &[]),
    ("pinned entries", &[("VOLSEC_NO_MOUNT_NAMESPACE", "1")]),
    (
        "pinned entries, fallback syscalls",
        &[
            ("VOLSEC_NO_MOUNT_NAMESPACE", "1"),
            ("VOLSEC_FORCE_FALLBACK", "1"),
        ],
    ),
];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Ownership,
    Relabel,
    Fused,
}

type State = (u32, u32, u32, i128, Option<Vec<u8>>);

fn label_of(path: &Path) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    match rustix::fs::lgetxattr(path, "security.selinux", &mut buf) {
        Ok(len) => Some(buf[..len].to_vec()),
        Err(rustix::io::Errno::NODATA) => None,
        Err(e) => panic!("{}: lgetxattr: {e}", path.display()),
    }
}

fn state(path: &Path) -> State {
    let m = std::fs::symlink_metadata(path).expect("outside entry");
    (m.uid(), m.gid(), m.mode(), ctime_ns(path), label_of(path))
}

fn snapshot_outside(outside: &Path) -> Vec<(PathBuf, State)> {
    all_paths(outside)
        .into_iter()
        .map(|p| {
            let s = state(&p);
            (p, s)
        })
        .collect()
}

/// Many names worth a write: 6 directories of 300 files, all to be changed every round.
fn build_volume(vol: &Path) {
    for i in 0..6 {
        let d = vol.join(format!("d{i}"));
        mkdir(&d, 0o755);
        for j in 0..300 {
            write_file(&d.join(format!("f{j}")), 0o600);
        }
    }
}

/// One pass of `kind` by the binary on `route`; the fsGroup and label alternate by round
/// so every entry needs a write. Exit 0 or 1 (entries may fail under the flips), never a
/// refusal or a crash.
fn pass(vol: &Path, kind: Kind, round: usize, env: &[(&str, &str)]) {
    let group = if round % 2 == 0 { "2000" } else { "3000" };
    let label = format!("system_u:object_r:container_file_t:s0:c{}", round % 2 + 1);
    let mut cmd = volsec();
    match kind {
        Kind::Ownership => cmd.args(["apply", "--fs-group", group]),
        Kind::Relabel => cmd.args(["relabel", "--context", &label]),
        Kind::Fused => cmd.args(["apply", "--fs-group", group, "--selinux-context", &label]),
    };
    cmd.args(["--output", "json", "--quiet"])
        .arg(vol)
        .envs(env.iter().copied());
    let out = run_with_timeout(cmd);
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "{kind:?} round {round} {env:?}: exit {:?}; stdout {} stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Bind-mounts `outside/canary` over six files and `outside/cdir` over another directory of
/// the volume, then unmounts them, until `stop`.
fn flip(vol: &Path, outside: &Path, stop: &AtomicBool, flips: &AtomicU64) {
    use rustix::mount::{mount_bind, unmount, UnmountFlags};
    // Six files in d0 to d4, none under the directory mounted over (d5).
    let file_targets: Vec<PathBuf> = (0..6)
        .map(|i| vol.join(format!("d{}/f{}", i % 5, 7 * i + 3)))
        .collect();
    let dir_target = vol.join("d5");
    let canary = outside.join("canary");
    let cdir = outside.join("cdir");
    while !stop.load(Ordering::Relaxed) {
        for t in &file_targets {
            mount_bind(&canary, t).expect("bind a file");
        }
        mount_bind(&cdir, &dir_target).expect("bind a directory");
        std::thread::yield_now();
        for t in file_targets.iter().chain([&dir_target]) {
            unmount(t, UnmountFlags::DETACH).expect("unmount");
        }
        flips.fetch_add(1, Ordering::Relaxed);
        std::thread::yield_now();
    }
}

fn mounts_flip_under(kind: Kind) {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    let outside = fs.subdir("outside");
    std::fs::set_permissions(
        &outside,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    write_file(&outside.join("canary"), 0o600);
    mkdir(&outside.join("cdir"), 0o700);
    write_file(&outside.join("cdir/key"), 0o600);
    build_volume(&vol);
    let before = snapshot_outside(&outside);

    let stop = AtomicBool::new(false);
    let flips = AtomicU64::new(0);
    std::thread::scope(|s| {
        let flipper = s.spawn(|| flip(&vol, &outside, &stop, &flips));
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (route, env) in ROUTES {
                for round in 0..ROUNDS {
                    pass(&vol, kind, round, env);
                    let changed: Vec<String> = before
                        .iter()
                        .filter(|(p, b)| state(p) != *b)
                        .map(|(p, b)| format!("{}: {b:?} -> {:?}", p.display(), state(p)))
                        .collect();
                    assert!(
                        changed.is_empty(),
                        "{kind:?} on the route '{route}', round {round}: a write landed \
                         OUTSIDE the volume through a mount:\n{}",
                        changed.join("\n")
                    );
                }
            }
        }));
        stop.store(true, Ordering::Relaxed);
        flipper.join().expect("the flipper");
        if let Err(panic) = checked {
            std::panic::resume_unwind(panic);
        }
    });
    assert!(
        flips.load(Ordering::Relaxed) > (3 * ROUNDS) as u64,
        "the mounts barely flipped"
    );
}

#[test]
fn ownership_never_writes_through_a_mount_that_appears() {
    mounts_flip_under(Kind::Ownership);
}

#[test]
fn relabel_never_writes_through_a_mount_that_appears() {
    mounts_flip_under(Kind::Relabel);
}

#[test]
fn fused_never_writes_through_a_mount_that_appears() {
    mounts_flip_under(Kind::Fused);
}
