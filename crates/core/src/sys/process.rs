//! Process-wide facts and settings that only libc offers: the name service, signal
//! dispositions, and descriptors a service manager passed in. Kept here so that `sys` stays
//! the one module with `unsafe`, each block next to the reason it is sound.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// The home directory of `user` as the node's name service knows it (`getpwnam_r`: files,
/// LDAP, sssd, whatever nsswitch.conf lists).
pub fn home_of(user: &str) -> Option<PathBuf> {
    let name = CString::new(user).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be overwritten by getpwnam_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, and buf outlives the use of pwd below.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_dir.is_null() {
        return None;
    }
    // SAFETY: getpwnam_r succeeded, so pw_dir points to a NUL-terminated string in buf.
    let dir = unsafe { CStr::from_ptr(pwd.pw_dir) };
    (!dir.to_bytes().is_empty()).then(|| PathBuf::from(OsStr::from_bytes(dir.to_bytes())))
}

/// Gives SIGPIPE back its default action (Rust ignores it), so `volsec ... | head` ends
/// quietly, as Unix tools do. Call before any thread starts.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to its default; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// From now on SIGINT and SIGTERM only set a flag, read with [`interrupted`], instead of
/// ending the process: for a command that must clean up what it made before it exits.
pub fn flag_interrupts() {
    extern "C" fn on_signal(_: libc::c_int) {
        // Only an atomic store: all that is safe in a signal handler.
        INTERRUPTED.store(true, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Whether SIGINT or SIGTERM arrived since [`flag_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The first descriptor a service manager passes by socket activation (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// Takes the listening stream socket systemd passed as descriptor 3. The caller has checked
/// `LISTEN_PID`/`LISTEN_FDS` (the descriptor is this process's to take); this checks that it
/// is a stream socket before owning it, so a wrong unit file is an error, not a confusion.
pub fn adopt_listen_fd() -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::fd::FromRawFd;
    // SAFETY: descriptor 3 stays open for the life of the process (systemd passed it); it
    // is only borrowed here, to check what it is before taking it.
    let passed = unsafe { rustix::fd::BorrowedFd::borrow_raw(LISTEN_FDS_START) };
    let is_stream = rustix::net::sockopt::socket_type(passed)
        .is_ok_and(|t| t == rustix::net::SocketType::STREAM);
    if !is_stream {
        return Err(io::Error::other(
            "LISTEN_FDS is set but descriptor 3 is not a stream socket (volsec.socket must use ListenStream)",
        ));
    }
    // SAFETY: a listening socket systemd handed to this process; nothing else owns it.
    Ok(unsafe { std::os::unix::net::UnixListener::from_raw_fd(LISTEN_FDS_START) })
}
