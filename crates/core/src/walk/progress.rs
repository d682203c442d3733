//! Live counters of a pass, readable from other threads while it runs (the progress bar,
//! the agent's progress stream, metrics), and the capped list of failures with their paths.

use serde::Serialize;
use std::borrow::Cow;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// One entry that could not be handled.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    /// The entry's path, for people; never used to reach it. In JSON, `path` and its exact
    /// bytes `path_bytes` (see [`lossy`]).
    #[serde(flatten, serialize_with = "lossy::path_with_bytes")]
    pub path: PathBuf,
    /// The operation that failed (`chown`, `chmod`, `open`, `setxattr`, ...); owned only
    /// when the failure was read back from the agent's wire form.
    pub op: Cow<'static, str>,
    /// What the kernel answered, e.g. `EPERM`.
    pub errno: Errno,
    /// The kernel's message, e.g. "Operation not permitted".
    pub message: String,
}

/// Paths in JSON reports. Names in a volume are the container's choice and need not be
/// UTF-8; a report must never fail because of one, so invalid bytes become U+FFFD in the
/// string a person reads. Two names that differ only in their invalid bytes would then
/// read the same, so beside each such string goes its exact bytes, in hex (`path_bytes`):
/// `null` when the string is the path exactly (valid UTF-8), which it nearly always is.
pub mod lossy {
    use serde::ser::{SerializeMap, Serializer};
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    /// Serializes one path, lossily.
    pub fn path<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&path.to_string_lossy())
    }

    /// The path's bytes in lowercase hex when it is not UTF-8; `None` when the string is
    /// exact.
    pub fn bytes_hex(path: &Path) -> Option<String> {
        use std::fmt::Write as _;
        path.to_str().is_none().then(|| {
            path.as_os_str()
                .as_bytes()
                .iter()
                .fold(String::new(), |mut hex, b| {
                    let _ = write!(hex, "{b:02x}");
                    hex
                })
        })
    }

    /// A flattened field: `"path"` (lossy) and `"path_bytes"` (exact, or `null`).
    pub fn path_with_bytes<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("path", &path.to_string_lossy())?;
        map.serialize_entry("path_bytes", &bytes_hex(path))?;
        map.end()
    }

    /// A flattened field: `"nested_mounts"` (lossy) and `"nested_mounts_bytes"` (for each,
    /// exact or `null`).
    pub fn nested_mounts<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        let lossy: Vec<_> = paths.iter().map(|p| p.to_string_lossy()).collect();
        let exact: Vec<_> = paths.iter().map(|p| bytes_hex(p)).collect();
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("nested_mounts", &lossy)?;
        map.serialize_entry("nested_mounts_bytes", &exact)?;
        map.end()
    }
}

impl Failure {
    /// A failure of `op` on `path`, with the errno's name and the kernel's message apart.
    pub fn new(path: PathBuf, op: &'static str, err: &io::Error) -> Failure {
        let errno = Errno::of(err);
        let message = err.to_string();
        let message = message
            .split(" (os error")
            .next()
            .unwrap_or(&message)
            .to_string();
        Failure {
            path,
            op: Cow::Borrowed(op),
            errno,
            message,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} failed: {} ({})",
            crate::display::path(&self.path),
            self.op,
            self.message,
            self.errno
        )
    }
}

/// An errno value, shown as `errno(3)` names it (`EPERM`): what reports print and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(rustix::io::Errno);

impl Errno {
    /// The entry is gone: the container removed it while the pass ran.
    pub const NOENT: Errno = Errno(rustix::io::Errno::NOENT);
    /// An I/O error: also what an error that carries no errno is reported as.
    pub const IO: Errno = Errno(rustix::io::Errno::IO);

    /// The errno of an I/O error; `EIO` for an error that carries none.
    pub fn of(err: &io::Error) -> Errno {
        Errno(
            err.raw_os_error()
                .map_or(rustix::io::Errno::IO, rustix::io::Errno::from_raw_os_error),
        )
    }

    /// The raw value, e.g. 1 for `EPERM`.
    pub fn raw(self) -> i32 {
        self.0.raw_os_error()
    }

    /// The symbolic name of the errnos a pass meets; `None` for the others.
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|(e, _)| *e == self.0)
            .map(|(_, name)| *name)
    }
}

/// The errnos a pass meets, by name.
const NAMES: [(rustix::io::Errno, &str); 24] = {
    use rustix::io::Errno as E;
    [
        (E::PERM, "EPERM"),
        (E::NOENT, "ENOENT"),
        (E::IO, "EIO"),
        (E::ACCESS, "EACCES"),
        (E::BUSY, "EBUSY"),
        (E::EXIST, "EEXIST"),
        (E::NOTDIR, "ENOTDIR"),
        (E::ISDIR, "EISDIR"),
        (E::INVAL, "EINVAL"),
        (E::MFILE, "EMFILE"),
        (E::NFILE, "ENFILE"),
        (E::NOSPC, "ENOSPC"),
        (E::ROFS, "EROFS"),
        (E::LOOP, "ELOOP"),
        (E::NAMETOOLONG, "ENAMETOOLONG"),
        (E::NOTSUP, "EOPNOTSUPP"),
        (E::NODATA, "ENODATA"),
        (E::RANGE, "ERANGE"),
        (E::DQUOT, "EDQUOT"),
        (E::STALE, "ESTALE"),
        (E::NOMEM, "ENOMEM"),
        (E::XDEV, "EXDEV"),
        (E::NOSYS, "ENOSYS"),
        (E::AGAIN, "EAGAIN"),
    ]
};

/// Reads back what [`Display`](std::fmt::Display) wrote (`EPERM`, `errno 140`), as reports
/// carry it over the wire.
impl std::str::FromStr for Errno {
    type Err = UnknownErrno;

    fn from_str(text: &str) -> Result<Errno, UnknownErrno> {
        if let Some((e, _)) = NAMES.iter().find(|(_, name)| *name == text) {
            return Ok(Errno(*e));
        }
        text.strip_prefix("errno ")
            .and_then(|n| n.parse().ok())
            .map(|raw| Errno(rustix::io::Errno::from_raw_os_error(raw)))
            .ok_or_else(|| UnknownErrno(text.to_string()))
    }
}

/// Text that names no errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an errno name")]
pub struct UnknownErrno(pub String);

/// As the text [`Display`](std::fmt::Display) gives: JSON reports say `"errno": "EPERM"`.
impl Serialize for Errno {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The name, or `errno N` for one without a name here.
impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "errno {}", self.raw()),
        }
    }
}

/// Whether an error is the filesystem's, not the entry's: every entry after it would fail
/// the same way (read-only, the device failing, full, over quota), so the walk stops at the
/// first instead of failing each of the rest.
pub fn is_filesystem_wide(errno: Errno) -> bool {
    use rustix::io::Errno as E;
    matches!(errno.0, E::ROFS | E::IO | E::NOSPC | E::DQUOT)
}

/// The one sentence a report gives for the failure that stopped a pass.
pub fn stop_sentence(failure: &Failure) -> String {
    use rustix::io::Errno as E;
    let what = match failure.errno.0 {
        E::ROFS => "the filesystem is read-only",
        E::NOSPC => "the filesystem is full",
        E::DQUOT => "the filesystem's quota is exhausted",
        _ => "the device reported an I/O error",
    };
    format!(
        "{what} ({}: {} {} failed), so the pass stopped at its first such error without trying the rest; the root was left unchanged",
        failure.errno,
        failure.path.display(),
        failure.op
    )
}

/// Counters of a pass. All are monotonic while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    visited: AtomicU64,
    changed: AtomicU64,
    unchanged: AtomicU64,
    failed: AtomicU64,
    vanished: AtomicU64,
    max_errors: AtomicU64,
    excluded: AtomicU64,
    errors: Mutex<Vec<Failure>>,
    skipped_mounts: Mutex<Vec<PathBuf>>,
    /// The first filesystem-wide failure ([`is_filesystem_wide`]): the walk stops at it.
    stopped: Mutex<Option<Failure>>,
    /// Whether `stopped` is set, read by every worker between entries.
    stopping: std::sync::atomic::AtomicBool,
    /// Non-directories with more than one name, among the entries read with their
    /// attributes.
    hard_linked: AtomicU64,
    /// Block and character device nodes, among the entries read with their attributes.
    devices: AtomicU64,
    /// Workers in flight: the walk's thread count, or the most an adaptive walk reached.
    concurrency: AtomicU64,
}

/// A snapshot of [`Progress`]. Every entry the walk meets is counted once in `visited` and
/// once in exactly one of the others: `visited == changed + unchanged + failed + vanished +
/// skipped_mounts`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    /// Entries met, the root included once it is (each also counted in exactly one of the
    /// fields below).
    pub visited: u64,
    /// Entries whose group, mode or label was written.
    pub changed: u64,
    /// Entries that were already right and were not written.
    pub unchanged: u64,
    /// Entries that could not be examined or changed. A directory whose listing fails after
    /// it was handled counts here once more, standing for its entries that were never met.
    pub failed: u64,
    /// Entries that disappeared while the pass ran (not failures).
    pub vanished: u64,
    /// Nested mount points left alone.
    pub skipped_mounts: u64,
    /// Top-level entries left alone as asked (`--exclude`), not descended.
    pub excluded: u64,
}

impl Progress {
    /// Records the workers the walk keeps in flight (see [`super::concurrency`]).
    pub fn set_concurrency(&self, workers: usize) {
        self.concurrency.store(workers as u64, Relaxed);
    }

    /// The workers the walk kept in flight (the most, when it adapted them); 0 before a
    /// walk.
    pub fn concurrency(&self) -> u64 {
        self.concurrency.load(Relaxed)
    }

    /// Counters at zero that keep at most `max_errors` failures with their paths.
    pub fn new(max_errors: usize) -> Progress {
        let p = Progress::default();
        p.max_errors.store(max_errors as u64, Relaxed);
        p
    }

    /// A snapshot of the counters now.
    pub fn tally(&self) -> Tally {
        Tally {
            visited: self.visited.load(Relaxed),
            changed: self.changed.load(Relaxed),
            unchanged: self.unchanged.load(Relaxed),
            failed: self.failed.load(Relaxed),
            vanished: self.vanished.load(Relaxed),
            skipped_mounts: self.skipped_mounts.lock().expect("lock").len() as u64,
            excluded: self.excluded.load(Relaxed),
        }
    }

    /// The failures kept with their paths (at most `max_errors`; [`Tally::failed`] counts all).
    pub fn errors(&self) -> Vec<Failure> {
        self.errors.lock().expect("lock").clone()
    }

    /// The nested mount points left alone so far.
    pub fn skipped_mounts(&self) -> Vec<PathBuf> {
        self.skipped_mounts.lock().expect("lock").clone()
    }

    pub(crate) fn visit(&self) {
        self.visited.fetch_add(1, Relaxed);
    }

    /// Counts what kubelet treats like any file but deserves a word in the report: a hard
    /// link (a non-directory with more than one name) and a device node.
    pub(crate) fn note(&self, stat: &crate::sys::Stat) {
        use crate::sys::FileKind;
        if !stat.is_dir() && stat.nlink > 1 {
            self.hard_linked.fetch_add(1, Relaxed);
        }
        if matches!(stat.kind, FileKind::BlockDevice | FileKind::CharDevice) {
            self.devices.fetch_add(1, Relaxed);
        }
    }

    /// Non-directories with more than one name met so far (see [`Progress::note`]).
    pub fn hard_linked(&self) -> u64 {
        self.hard_linked.load(Relaxed)
    }

    /// Device nodes met so far (see [`Progress::note`]).
    pub fn devices(&self) -> u64 {
        self.devices.load(Relaxed)
    }

    pub(crate) fn record(&self, visited: super::Visited) {
        match visited {
            super::Visited::Changed => self.changed.fetch_add(1, Relaxed),
            super::Visited::Unchanged => self.unchanged.fetch_add(1, Relaxed),
        };
    }

    /// Records a failed operation. `ENOENT` means the container removed the entry while the
    /// pass ran: counted as vanished, not as a failure. The first filesystem-wide failure
    /// stops the walk; those that other workers meet before they see it are counted, not
    /// listed: they say nothing more.
    pub(crate) fn fail(&self, failure: Failure) {
        if failure.errno == Errno::NOENT {
            self.vanished.fetch_add(1, Relaxed);
            return;
        }
        self.failed.fetch_add(1, Relaxed);
        if is_filesystem_wide(failure.errno) {
            let mut stopped = self.stopped.lock().expect("lock");
            if stopped.is_some() {
                return;
            }
            *stopped = Some(failure.clone());
            self.stopping.store(true, Relaxed);
        }
        self.keep(failure);
    }

    /// Whether a filesystem-wide failure stopped the walk.
    pub fn is_stopped(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    /// The filesystem-wide failure that stopped the walk, if one did.
    pub fn stopped(&self) -> Option<Failure> {
        self.stopped.lock().expect("lock").clone()
    }

    pub(crate) fn exclude(&self) {
        self.excluded.fetch_add(1, Relaxed);
    }

    /// Records a failure of the root itself, which is never counted as vanished.
    pub fn fail_root(&self, failure: Failure) {
        self.failed.fetch_add(1, Relaxed);
        self.keep(failure);
    }

    fn keep(&self, failure: Failure) {
        let mut errors = self.errors.lock().expect("lock");
        if (errors.len() as u64) < self.max_errors.load(Relaxed) {
            errors.push(failure);
        }
    }

    pub(crate) fn skip_mount(&self, path: PathBuf) {
        tracing::info!(path = %crate::display::path(&path), "nested mount point skipped");
        self.skipped_mounts.lock().expect("lock").push(path);
    }
}
