//! A mode computed for one inode must never be written to another.
//!
//! The pass reads an entry's mode, then (by name) chowns it and chmods it to that mode OR the
//! mask, putting back the setuid/setgid bits chown cleared. If the container swaps another
//! file in under the same name between the read and the chmod, the other file receives the
//! first file's mode. A container user (uid 1000) can make its own file setuid (to itself);
//! renaming needs only write access to the directory, so it can swap in a file owned by
//! root (say a shell an init container copied into a shared volume): that file would come out
//! setuid root. kubelet has the same hole (lstat, then chmod by path); volsec promises a
//! race-free pass, so it must not.
//!
//! Pairs of (setuid file of uid 1000, plain root-owned file) are exchanged atomically
//! (`renameat2` `RENAME_EXCHANGE`) in a loop while passes run in-process. Every round puts the
//! setuid file back and alternates the fsGroup, so every round chowns and chmods both. The
//! root-owned files must never gain a bit beyond their own mode OR kubelet's mask.

use crate::common::*;

use rustix::fs::{Mode, OFlags, RenameFlags};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use volsec_core::ownership::ChangePolicy;
use volsec_core::prepare::PassOutcome;

const PAIRS: usize = 32;
const ROUNDS: usize = 300;
const CONTAINER_UID: u32 = 1000;
/// Mode of the root-owned files, and what kubelet's rule may make of it (0700 | 0660).
const ROOT_FILE_MODE: u32 = 0o700;
const ROOT_FILE_AFTER: u32 = 0o760;

fn pass(vol: &Path, round: usize) {
    let fs_group = if round % 2 == 0 { 2000 } else { 3000 };
    let report = prepare_fs_group(vol, Some(fs_group), ChangePolicy::Always)
        .unwrap_or_else(|e| panic!("round {round}: refused: {e}"));
    assert!(
        matches!(report.outcome, PassOutcome::Complete | PassOutcome::Partial),
        "round {round}: {report:?}"
    );
}

/// Sets the flag when dropped, also while unwinding.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_root_owned_file_swapped_in_never_gets_another_files_setuid_mode() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    // Hard links outside the volume keep hold of each inode whatever its name in the volume
    // is at the moment: the test inspects and resets the inodes through them, never through
    // the raced names.
    let refs = fs.subdir("refs");
    let mut root_files: Vec<PathBuf> = Vec::new();
    let mut suid_files: Vec<PathBuf> = Vec::new();
    for i in 0..PAIRS {
        let mine = vol.join(format!("mine{i}"));
        write_file(&mine, 0o4777);
        std::os::unix::fs::lchown(&mine, Some(CONTAINER_UID), Some(CONTAINER_UID)).unwrap();
        std::fs::set_permissions(&mine, PermissionsExt::from_mode(0o4777)).unwrap();
        let r = refs.join(format!("mine{i}"));
        std::fs::hard_link(&mine, &r).unwrap();
        suid_files.push(r);
        let roots = vol.join(format!("rootsh{i}"));
        write_file(&roots, ROOT_FILE_MODE);
        let r = refs.join(format!("rootsh{i}"));
        std::fs::hard_link(&roots, &r).unwrap();
        root_files.push(r);
    }
    let dir = rustix::fs::open(&vol, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    let stop = AtomicBool::new(false);
    let swaps = AtomicU64::new(0);
    let started = Instant::now();
    let mut escalated: Vec<String> = Vec::new();

    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for i in 0..PAIRS {
                    let (a, b) = (format!("mine{i}"), format!("rootsh{i}"));
                    rustix::fs::renameat_with(&dir, &a, &dir, &b, RenameFlags::EXCHANGE).unwrap();
                }
                swaps.fetch_add(PAIRS as u64, Ordering::Relaxed);
            }
        });
        // Stops the swapper however this thread leaves the scope: a failed pass must fail the
        // test, not leave the scope waiting for a swapper that never stops.
        let _stop = StopOnDrop(&stop);
        for round in 0..ROUNDS {
            pass(&vol, round);
            for r in &root_files {
                let m = std::fs::symlink_metadata(r).unwrap();
                let perm = m.mode() & 0o7777;
                if m.uid() == 0 && perm & !ROOT_FILE_AFTER != 0 {
                    escalated.push(format!(
                        "round {round}: root-owned {} got mode {perm:o}",
                        r.display()
                    ));
                    std::fs::set_permissions(r, PermissionsExt::from_mode(ROOT_FILE_MODE)).unwrap();
                }
            }
            // Put the setuid bit back on the container's files (a swapped-in mode may have
            // taken it away) so that every round has it to carry.
            for m in &suid_files {
                std::fs::set_permissions(m, PermissionsExt::from_mode(0o4777)).unwrap();
            }
            if !escalated.is_empty() && started.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });

    assert!(
        escalated.is_empty(),
        "a mode read from one inode was written to another ({} times in {:?}, {} swaps); \
         the first: {}",
        escalated.len(),
        started.elapsed(),
        swaps.load(Ordering::Relaxed),
        escalated[0]
    );
}
