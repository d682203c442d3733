//! A mount namespace of a pass's own, into which no mount made elsewhere can arrive.
//!
//! A name inside the volume can become a mount point while a pass runs (`mount --bind
//! /etc/shadow vol/d/f`). A change made by name then lands on the mounted file, on another
//! filesystem. In a private copy of the mount namespace (`unshare(CLONE_NEWNS)`, then every
//! mount made private) mounts and unmounts made anywhere else never propagate: the table the
//! pass reads once before its walk stays true until it ends, so an entry whose `statx` says
//! it is on the root's mount is still there when it is written by name. Descriptors opened
//! in the copy resolve names in the copy for as long as they live, whichever thread uses
//! them; only the thread that made the copy moves into it, and it ends at once.

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags, CWD};
use std::io;

/// Runs `f` on a new thread that first moves into a private copy of this thread's mount
/// namespace. Returns what `f` returned, with a descriptor of the namespace
/// (`/proc/thread-self/ns/mnt`): it keeps the copy, and the nested mounts in it, alive
/// after the thread has ended. Fails where the process may not make a namespace (no
/// `CAP_SYS_ADMIN`, a seccomp filter), and when `VOLSEC_NO_MOUNT_NAMESPACE=1` is set (the
/// route of a process without that right, kept tested).
pub fn in_private_mounts<T: Send>(f: impl FnOnce() -> T + Send) -> io::Result<(T, OwnedFd)> {
    if std::env::var_os("VOLSEC_NO_MOUNT_NAMESPACE").is_some_and(|v| v == "1") {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("volsec-mounts".into())
            .spawn_scoped(s, move || {
                // SAFETY: CLONE_NEWNS (with the CLONE_FS it implies) gives this thread its
                // own mount namespace, root and working directory; the descriptor table
                // stays shared, so every descriptor stays valid on every thread.
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
                rustix::mount::mount_change(
                    "/",
                    rustix::mount::MountPropagationFlags::PRIVATE
                        | rustix::mount::MountPropagationFlags::REC,
                )?;
                let ns = rustix::fs::openat(
                    CWD,
                    "/proc/thread-self/ns/mnt",
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                Ok((f(), ns))
            })?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
