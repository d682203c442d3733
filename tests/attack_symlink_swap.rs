//! The container owns the volume and races volsec (host root) while it runs. Another thread
//! keeps swapping an entry of the volume for something else while `volsec apply` passes over
//! it, round after round:
//! - a directory for a symlink to a directory OUTSIDE the volume (atomic `renameat2`
//!   `RENAME_EXCHANGE`, and a plain, non-atomic rename dance);
//! - a file for a symlink to a file outside the volume (on the native `fchmodat2` route and
//!   on the `O_PATH` + `/proc/self/fd` fallback);
//! - a directory for a FIFO nobody writes to (opening it would block the pass);
//! - the parent of the root for a symlink just before the pass (refused).
//!
//! Outside the volume, on the same filesystem, sits a tree of files, directories and a
//! FIFO with gid 0 and modes volsec would change. Nothing there may ever change: uid, gid,
//! mode and ctime of every outside inode are compared before and after all rounds (ctime
//! catches even a write that was put back).
//!
//! The passes may legitimately report failures caused by the swaps (exit 1: an entry changed
//! kind under them), never refuse a good root, never hang, and never touch the outside.

use crate::common::*;

use rustix::fs::{Mode, OFlags, RenameFlags};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use volsec_core::ownership::ChangePolicy;
use volsec_core::prepare::PassOutcome;

/// Passes per attack. The first [`BINARY_ROUNDS`] run the `volsec apply` binary; the rest
/// drive the same library call in-process, which costs no process start (tens of
/// milliseconds on a busy CI machine) and so races many more times per second.
const ROUNDS: usize = 200;
const BINARY_ROUNDS: usize = 10;

/// One `volsec apply --fs-group 2000 --output json` under attack: returns the exit code
/// after checking it is one an attack may cause (0 done, 1 entries failed under the swaps).
fn apply_under_attack(vol: &Path, round: usize, env: &[(&str, &str)]) -> i32 {
    let mut cmd = volsec();
    cmd.args([
        "apply",
        "--fs-group",
        fs_group(round),
        "--output",
        "json",
        "--quiet",
    ])
    .arg(vol)
    .envs(env.iter().copied());
    let out = run_with_timeout(cmd);
    let code = out.status.code().unwrap_or_else(|| {
        panic!(
            "volsec died: {:?}; {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        code == 0 || code == 1,
        "a pass over a good root under attack is done or partial, never refused or crashed: \
         exit {code}; stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    if code == 1 {
        assert!(
            report["failed"].as_u64() > Some(0),
            "exit 1 lists failures: {report}"
        );
    }
    code
}

/// One pass, by the binary or in-process (see [`ROUNDS`]); returns 0 (done) or 1 (partial).
fn pass(vol: &Path, round: usize, env: &[(&str, &str)]) -> i32 {
    if round < BINARY_ROUNDS || !env.is_empty() {
        return apply_under_attack(vol, round, env);
    }
    let fs_group = fs_group(round).parse().unwrap();
    let report = prepare_fs_group(vol, Some(fs_group), ChangePolicy::Always)
        .unwrap_or_else(|e| panic!("round {round}: a good root under attack was refused: {e}"));
    match report.outcome {
        PassOutcome::Complete => 0,
        PassOutcome::Partial => 1,
        other => panic!("round {round}: outcome {other}: {report:?}"),
    }
}

fn assert_outside_untouched(attack: &str, before: &Snapshot) {
    let mut changed = Vec::new();
    for (path, b) in before {
        match std::fs::symlink_metadata(path) {
            Ok(m) => {
                let now = (m.uid(), m.gid(), m.mode(), ctime_ns(path));
                if now != *b {
                    changed.push(format!("{}: {:?} -> {:?}", path.display(), b, now));
                }
            }
            Err(e) => changed.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        changed.is_empty(),
        "{attack}: volsec changed {} inode(s) OUTSIDE the volume:\n{}",
        changed.len(),
        changed.join("\n")
    );
}

/// A tree outside the volume that volsec would change if it ever got there: gid 0, modes
/// without the group bits, a FIFO (which would also block an open), nested directories.
fn build_outside(at: &Path) {
    mkdir(at, 0o700);
    write_file(&at.join("secret"), 0o600);
    write_file(&at.join("suid"), 0o4700);
    mkfifo(&at.join("fifo"), 0o600);
    for d in ["etc", "etc/ssl", "etc/ssl/private"] {
        mkdir(&at.join(d), 0o700);
        write_file(&at.join(d).join("key"), 0o600);
    }
}

/// A directory worth walking: subdirectories and files, all needing a change.
fn build_victim(at: &Path) {
    mkdir(at, 0o755);
    for i in 0..8 {
        let d = at.join(format!("d{i}"));
        mkdir(&d, 0o700);
        for j in 0..6 {
            write_file(&d.join(format!("f{j}")), 0o600);
        }
    }
    for j in 0..10 {
        write_file(&at.join(format!("f{j}")), 0o644);
    }
}

/// The fsGroup of round `round`: alternating, so that every round has every entry to chown
/// (resetting the volume by path while the swapper runs would itself follow the swapped
/// symlinks; the test must not touch the volume except through volsec).
fn fs_group(round: usize) -> &'static str {
    if round % 2 == 0 {
        "2000"
    } else {
        "3000"
    }
}

/// The attacks are run one at a time: each keeps a core busy swapping.
static ONE_ATTACK_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Sets the flag when dropped, also when a pass panics, so the swapper always stops.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `swap` in a loop on another thread while `rounds` passes run; returns how many swaps
/// were made. The swapper is stopped (and has finished its last swap) before returning.
fn race(rounds: usize, swap: impl Fn() + Send + Sync, mut pass: impl FnMut(usize)) -> u64 {
    let _serial = ONE_ATTACK_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let stop = AtomicBool::new(false);
    let swaps = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                swap();
                if swaps.fetch_add(1, Ordering::Relaxed) % 64 == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let _stop = StopOnDrop(&stop);
        for round in 0..rounds {
            pass(round);
        }
    });
    swaps.load(Ordering::Relaxed)
}

fn dir_fd(p: &Path) -> rustix::fd::OwnedFd {
    rustix::fs::open(
        p,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap()
}

/// `renameat2(dir, a, dir, b, RENAME_EXCHANGE)`.
fn exchange(dir: &rustix::fd::OwnedFd, a: &str, b: &str) {
    rustix::fs::renameat_with(dir, a, dir, b, RenameFlags::EXCHANGE)
        .unwrap_or_else(|e| panic!("renameat2({a}, {b}, RENAME_EXCHANGE): {e}"));
}

struct Scene {
    _fs: Mounted,
    vol: PathBuf,
    outside: PathBuf,
}

/// A tmpfs with `vol/` and, beside it on the same filesystem, `outside/`.
fn scene() -> Scene {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    let outside = fs.path().join("outside");
    build_outside(&outside);
    Scene {
        _fs: fs,
        vol,
        outside,
    }
}

#[test]
fn directory_swapped_for_symlink_to_outside_directory_atomically() {
    let sc = scene();
    // Two depths: directly under the root, and in a subdirectory.
    mkdir(&sc.vol.join("x"), 0o755);
    build_victim(&sc.vol.join("victim"));
    build_victim(&sc.vol.join("x/victim"));
    std::os::unix::fs::symlink(&sc.outside, sc.vol.join("decoy")).unwrap();
    std::os::unix::fs::symlink(sc.outside.join("etc"), sc.vol.join("x/decoy")).unwrap();
    let outside_before = snapshot(&sc.outside);
    let top = dir_fd(&sc.vol);
    let x = dir_fd(&sc.vol.join("x"));
    let started = Instant::now();
    let mut partial = 0;

    let swaps = race(
        ROUNDS,
        || {
            exchange(&top, "victim", "decoy");
            exchange(&x, "victim", "decoy");
        },
        |round| {
            partial += (pass(&sc.vol, round, &[]) == 1) as usize;
        },
    );

    assert_outside_untouched("directory <-> symlink (RENAME_EXCHANGE)", &outside_before);
    assert!(
        swaps > ROUNDS as u64,
        "the swapper ran ({swaps} swaps in {ROUNDS} rounds)"
    );
    eprintln!(
        "{ROUNDS} rounds, {swaps} swaps, {partial} partial passes, {:?}",
        started.elapsed()
    );
}

#[test]
fn directory_swapped_for_symlink_with_plain_renames() {
    // Non-atomic: victim -> hold, link -> victim, victim -> link, hold -> victim. There are
    // moments when `victim` does not exist at all (vanished, not failed) and moments when it
    // is the symlink.
    let sc = scene();
    build_victim(&sc.vol.join("victim"));
    std::os::unix::fs::symlink(&sc.outside, sc.vol.join("link")).unwrap();
    let outside_before = snapshot(&sc.outside);
    let top = dir_fd(&sc.vol);

    let swaps = race(
        ROUNDS,
        || {
            let r = |a: &str, b: &str| rustix::fs::renameat(&top, a, &top, b).unwrap();
            r("victim", "hold");
            r("link", "victim");
            r("victim", "link");
            r("hold", "victim");
        },
        |round| {
            pass(&sc.vol, round, &[]);
        },
    );

    assert_outside_untouched("directory <-> symlink (rename loop)", &outside_before);
    assert!(swaps > ROUNDS as u64, "the swapper ran ({swaps} swaps)");
}

fn swap_files_for_outside_symlinks(rounds: usize, env: &[(&str, &str)]) {
    let sc = scene();
    for i in 0..20 {
        write_file(&sc.vol.join(format!("file{i}")), 0o600);
        std::os::unix::fs::symlink(sc.outside.join("secret"), sc.vol.join(format!("decoy{i}")))
            .unwrap();
    }
    write_file(&sc.vol.join("exe"), 0o4700);
    std::os::unix::fs::symlink(sc.outside.join("suid"), sc.vol.join("exe_decoy")).unwrap();
    let outside_before = snapshot(&sc.outside);
    let top = dir_fd(&sc.vol);

    race(
        rounds,
        || {
            for i in 0..20 {
                exchange(&top, &format!("file{i}"), &format!("decoy{i}"));
            }
            exchange(&top, "exe", "exe_decoy");
        },
        |round| {
            pass(&sc.vol, round, env);
        },
    );

    assert_outside_untouched("file <-> symlink to an outside file", &outside_before);
}

#[test]
fn file_swapped_for_symlink_to_outside_file() {
    swap_files_for_outside_symlinks(ROUNDS, &[]);
}

#[test]
fn file_swapped_for_symlink_to_outside_file_on_the_fallback_route() {
    // The O_PATH + /proc/self/fd route of kernels before fchmodat2 (6.6). The route is
    // chosen per process, so every round here runs the binary, hence fewer rounds.
    swap_files_for_outside_symlinks(4 * BINARY_ROUNDS, &[("VOLSEC_FORCE_FALLBACK", "1")]);
}

#[test]
fn directory_swapped_for_fifo_never_blocks() {
    // A FIFO with no writer: an open(O_RDONLY) without O_NONBLOCK would block forever.
    let sc = scene();
    build_victim(&sc.vol.join("victim"));
    mkfifo(&sc.vol.join("pipe"), 0o600);
    // And a directory swapped for a symlink to an outside FIFO.
    build_victim(&sc.vol.join("victim2"));
    std::os::unix::fs::symlink(sc.outside.join("fifo"), sc.vol.join("pipe_link")).unwrap();
    let outside_before = snapshot(&sc.outside);
    let top = dir_fd(&sc.vol);
    let started = Instant::now();

    race(
        ROUNDS,
        || {
            exchange(&top, "victim", "pipe");
            exchange(&top, "victim2", "pipe_link");
        },
        |round| {
            pass(&sc.vol, round, &[]);
        },
    );

    assert_outside_untouched("directory <-> FIFO", &outside_before);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{ROUNDS} passes took {:?}",
        started.elapsed()
    );
}

#[test]
fn parent_of_the_root_swapped_for_a_symlink_is_refused() {
    // /pods/uid/vol where the container (or anyone) replaced `uid` with a symlink to a
    // directory that has a `vol` of its own outside: refused, nothing there changes.
    let sc = scene();
    let pods = sc.vol.join("pods");
    mkdir(&pods.join("uid/vol"), 0o755);
    write_file(&pods.join("uid/vol/f"), 0o600);
    mkdir(&sc.outside.join("uid/vol"), 0o700);
    write_file(&sc.outside.join("uid/vol/f"), 0o600);
    let outside_before = snapshot(&sc.outside);
    let root = pods.join("uid/vol");

    // Swapped once, before the pass.
    std::fs::rename(pods.join("uid"), pods.join("uid.real")).unwrap();
    std::os::unix::fs::symlink(sc.outside.join("uid"), pods.join("uid")).unwrap();
    let out = run_with_timeout({
        let mut c = volsec();
        c.args(["apply", "--fs-group", "2000"]).arg(&root);
        c
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {stderr}");
    assert!(
        stderr.contains("symlink") && stderr.contains(&root.display().to_string()),
        "one sentence naming the path and the symlink: {stderr}"
    );
    assert_outside_untouched("parent swapped before the pass", &outside_before);

    // Swapped back and forth while passes start: each is either refused or done on the real
    // volume.
    let real_files_before = gid_mode(&pods.join("uid.real/vol/f"));
    assert_eq!(real_files_before, (0, 0o600));
    let fd = dir_fd(&pods);
    let mut refused = 0;
    race(
        ROUNDS,
        || exchange(&fd, "uid", "uid.real"),
        |round| {
            if round < BINARY_ROUNDS {
                let out = run_with_timeout({
                    let mut c = volsec();
                    c.args(["apply", "--fs-group", fs_group(round), "--quiet"])
                        .arg(&root);
                    c
                });
                match out.status.code() {
                    Some(0) => {}
                    Some(2) => refused += 1,
                    other => panic!("exit {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
                }
                return;
            }
            let fs_group = fs_group(round).parse().unwrap();
            match prepare_fs_group(&root, Some(fs_group), ChangePolicy::Always) {
                Ok(report) => assert_eq!(report.outcome, PassOutcome::Complete, "{report:?}"),
                Err(volsec_core::prepare::PrepareError::Root(_)) => refused += 1,
                Err(e) => panic!("round {round}: {e}"),
            }
        },
    );
    assert_outside_untouched("parent swapped during passes", &outside_before);
    eprintln!("{refused} of {ROUNDS} passes refused");
}

#[test]
fn swaps_inside_a_huge_directory_read_in_inode_order() {
    // A directory bigger than one read buffer, whose entries all need a change, takes the
    // slice route (src/walk/inode_order.rs): its entries are read first and changed later,
    // in inode order, a piece at a time. The window between reading a name and using it is
    // longer there; the swaps must still find nothing but the volume.
    let sc = scene();
    let big = sc.vol.join("big");
    mkdir(&big, 0o755);
    for i in 0..40_000 {
        write_file(&big.join(format!("file-{i:05}")), 0o644);
    }
    build_victim(&big.join("victim"));
    std::os::unix::fs::symlink(&sc.outside, big.join("decoy")).unwrap();
    for i in 0..20 {
        write_file(&big.join(format!("f{i}")), 0o600);
        std::os::unix::fs::symlink(sc.outside.join("secret"), big.join(format!("s{i}"))).unwrap();
    }
    let outside_before = snapshot(&sc.outside);
    let fd = dir_fd(&big);
    let rounds = 24;

    let swaps = race(
        rounds,
        || {
            exchange(&fd, "victim", "decoy");
            for i in 0..20 {
                exchange(&fd, &format!("f{i}"), &format!("s{i}"));
            }
        },
        |round| {
            pass(&sc.vol, round, &[]);
        },
    );

    assert_outside_untouched("swaps inside a huge directory", &outside_before);
    assert!(swaps > rounds as u64, "the swapper ran ({swaps} swaps)");
}
