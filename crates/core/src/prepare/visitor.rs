//! The per-entry work of a pass: read what is there, write only what differs.

use super::Job;
use crate::ownership::{Changes, Ownership};
use crate::selinux::{self, Context};
use crate::sys::{self, Target};
use crate::walk::{Entry, OpError, Root, Visited, Visitor};
use rustix::fd::AsFd;
use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

pub(super) struct PassVisitor {
    ownership: Option<Ownership>,
    /// The label in canonical form, as written (without a trailing NUL, as go-selinux and
    /// the container runtimes write it).
    label: Option<String>,
    dry_run: bool,
    /// `EOPNOTSUPP` on a label is "relabel not needed" for that entry, not a failure.
    ignore_unsupported: bool,
    /// Some entry's filesystem could not store a label (with `ignore_unsupported`).
    unsupported: AtomicBool,
    /// Some entry's filesystem could not store a label, and that ends the pass.
    halted: AtomicBool,
}

impl PassVisitor {
    pub fn new(job: &Job, dry_run: bool) -> PassVisitor {
        PassVisitor {
            ownership: job.ownership,
            label: job.label.as_ref().map(Context::to_string),
            dry_run,
            ignore_unsupported: job.ignore_unsupported_labels,
            unsupported: AtomicBool::new(false),
            halted: AtomicBool::new(false),
        }
    }

    /// Whether some entry's filesystem could not store a label and the job allowed it.
    pub fn met_unsupported_labels(&self) -> bool {
        self.unsupported.load(Ordering::Relaxed)
    }

    /// Whether the root already has everything the job asks for (the OnRootMismatch test,
    /// extended to the label when one is asked for).
    pub fn root_matches(&self, root: &Root) -> bool {
        let ownership_ok = self.ownership.is_none_or(|o| o.root_matches(root.stat()));
        ownership_ok
            && self
                .label
                .as_deref()
                .is_none_or(|l| matches!(label_differs(Target::Fd(root.fd()), l), Ok(false)))
    }

    fn ownership(&self, own: &Ownership, entry: &Entry<'_>) -> Result<bool, OpError> {
        let stat = entry
            .stat
            .expect("needs_stat() asks for every entry's attributes");
        let changes = own.changes(stat);
        if changes.is_empty() || self.dry_run {
            return Ok(!changes.is_empty());
        }
        // A pin the walker took already keeps the inode the attributes were read from.
        if entry.fd.is_none()
            && entry.pin.is_none()
            && (changes.chmod.is_some() || entry.must_pin())
        {
            return self.ownership_pinned(own, entry);
        }
        write_ownership(own, changes, entry.target())?;
        Ok(true)
    }

    /// A new mode is computed from the mode read, so it must reach the same inode: a
    /// container could rename another file (say a root-owned one) over the name between the
    /// read and a chmod by name, and it would get this file's bits, setuid included. So the
    /// entry is pinned, read again through the pin, and changed through the pin. (Where a
    /// mount may appear over the name, the pin is taken only on the root's mount.)
    fn ownership_pinned(&self, own: &Ownership, entry: &Entry<'_>) -> Result<bool, OpError> {
        let pinned = entry.pin_now().map_err(|e| OpError::new("open", e))?;
        let stat = sys::stat_fd(pinned.as_fd()).map_err(|e| OpError::new("stat", e))?;
        let changes = own.changes(&stat);
        write_ownership(own, changes, Target::Pinned(pinned.as_fd()))?;
        Ok(!changes.is_empty())
    }

    fn label(&self, label: &str, entry: &Entry<'_>) -> Result<bool, OpError> {
        let unread = !self.dry_run && LabelRun::write_unread(entry);
        let differs = unread
            || match label_differs(entry.target(), label) {
                Err(e) if is_unsupported(&e) => return self.unsupported(e),
                read => read.map_err(|e| OpError::new("getxattr", e))?,
            };
        if !unread {
            LabelRun::read(entry, differs);
        }
        if differs && !self.dry_run {
            // Read by name, the label decides only whether to write; the write itself goes
            // through a pin on the root's mount where a mount may appear over the name.
            let pinned;
            let target = if entry.must_pin() {
                pinned = entry.pin_now().map_err(|e| OpError::new("open", e))?;
                Target::Pinned(pinned.as_fd())
            } else {
                entry.target()
            };
            match sys::set_xattr(target, selinux::XATTR, label.as_bytes()) {
                Err(e) if is_unsupported(&e) => return self.unsupported(e),
                written => written.map_err(|e| OpError::new("setxattr", e))?,
            }
        }
        Ok(differs)
    }

    /// The root's filesystem stores labels (checked before the walk), but one below it (a
    /// nested mount, or a `context=` mount that refuses writes) does not. As the runtimes
    /// do, that is "relabel not needed" when the job allows it; otherwise the first such
    /// entry is reported, once, and the pass stops there, leaving the root unchanged.
    fn unsupported(&self, e: io::Error) -> Result<bool, OpError> {
        if self.ignore_unsupported {
            self.unsupported.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        if self.halted.swap(true, Ordering::Relaxed) {
            return Ok(false);
        }
        Err(OpError::new(UNSUPPORTED, e))
    }
}

impl Visitor for PassVisitor {
    /// Ownership needs each entry's group and mode; a relabel only its label.
    fn needs_stat(&self) -> bool {
        self.ownership.is_some()
    }

    fn halted(&self) -> bool {
        self.halted.load(Ordering::Relaxed)
    }

    fn visit(&self, entry: &Entry<'_>) -> Result<Visited, OpError> {
        let mut changed = false;
        if let Some(own) = &self.ownership {
            changed |= self.ownership(own, entry)?;
        }
        if let Some(label) = &self.label {
            changed |= self.label(label, entry)?;
        }
        Ok(if changed {
            Visited::Changed
        } else {
            Visited::Unchanged
        })
    }
}

/// Where reading labels stops paying: a directory whose first entries all needed a new
/// label (a relabel to a new pod's categories, where every label differs) gets the labels of
/// the rest of its entries written without reading them first, which halves the calls per
/// entry. An entry that already had the label then gets it rewritten (a ctime bump, what
/// every container runtime's relabel does to every entry). A tree already right is never
/// rewritten: its first entries need nothing, so every entry is read. One entry in
/// [`LabelRun::CHECK_EVERY`] is still read, and one found right goes back to reading, so a
/// directory whose entries stop differing midway is not rewritten to its end.
///
/// Kept per thread: a worker visits one buffer of one directory at a time, in order. The
/// directory is told apart by its descriptor, which a later directory may reuse: that can
/// only make the later one skip reads it would have made, never write a wrong label.
#[derive(Clone, Copy, Default)]
struct LabelRun {
    /// The directory's descriptor (`-1`: none yet).
    parent: i32,
    /// Entries in a row, from its first read on, that needed a new label.
    differed: u32,
    /// Labels written unread since the last one read.
    unread: u32,
}

impl LabelRun {
    /// Entries of a directory that must all need a new label before the rest go unread.
    const FIRST: u32 = 8;
    /// While writing unread, one entry in this many is read first.
    const CHECK_EVERY: u32 = 16;

    thread_local! {
        static RUN: std::cell::Cell<LabelRun> = const {
            std::cell::Cell::new(LabelRun { parent: -1, differed: 0, unread: 0 })
        };
    }

    /// Whether `entry`'s label is written without reading it first.
    fn write_unread(entry: &Entry<'_>) -> bool {
        use rustix::fd::AsRawFd;
        let parent = entry.parent.as_raw_fd();
        Self::RUN.with(|run| {
            let mut r = run.get();
            let unread =
                r.parent == parent && r.differed >= Self::FIRST && r.unread + 1 < Self::CHECK_EVERY;
            if unread {
                r.unread += 1;
                run.set(r);
            }
            unread
        })
    }

    /// Records the label read of `entry`: whether it needed a new one.
    fn read(entry: &Entry<'_>, differed: bool) {
        use rustix::fd::AsRawFd;
        let parent = entry.parent.as_raw_fd();
        Self::RUN.with(|run| {
            let r = run.get();
            let same = r.parent == parent;
            run.set(LabelRun {
                parent,
                differed: match (differed, same) {
                    (false, _) => 0,
                    (true, true) => r.differed.saturating_add(1),
                    (true, false) => 1,
                },
                unread: 0,
            });
        });
    }
}

/// What the report names as failing when a filesystem below the root cannot store labels.
const UNSUPPORTED: &str = "labelling (this filesystem cannot store SELinux labels, so the pass stopped here; --ignore-unsupported treats that as relabel not needed)";

fn is_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// chown, then chmod: the mode is written after the chown, which clears setuid/setgid.
fn write_ownership(own: &Ownership, changes: Changes, target: Target<'_>) -> Result<(), OpError> {
    if changes.chown {
        sys::chown_group(target, own.fs_group).map_err(|e| OpError::new("chown", e))?;
    }
    if let Some(mode) = changes.chmod {
        sys::chmod(target, mode).map_err(|e| OpError::new("chmod", e))?;
    }
    Ok(())
}

/// Whether the root's filesystem can hold labels: `EOPNOTSUPP` on reading the label means
/// it cannot (vfat, NFS without labels, a `context=` mount).
pub(super) fn root_stores_labels(root: &Root) -> bool {
    let mut buf = [0u8; 256];
    match sys::get_xattr(Target::Fd(root.fd()), selinux::XATTR, &mut buf) {
        Err(e) => !is_unsupported(&e),
        Ok(_) => true,
    }
}

/// Reads the current label and compares it with `wanted` in canonical form. No label at
/// all (`ENODATA`) differs.
fn label_differs(target: Target<'_>, wanted: &str) -> io::Result<bool> {
    let mut buf = [0u8; 512];
    let long;
    let current = match sys::get_xattr(target, selinux::XATTR, &mut buf) {
        Ok(len) => &buf[..len],
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(true),
        // Many scattered categories make a label of kilobytes; it may still be right.
        Err(e) if e.raw_os_error() == Some(libc::ERANGE) => match read_long_label(target)? {
            Some(label) => {
                long = label;
                &long[..]
            }
            None => return Ok(true),
        },
        Err(e) => return Err(e),
    };
    let current = current.strip_suffix(b"\0").unwrap_or(current);
    if current == wanted.as_bytes() {
        return Ok(false);
    }
    Ok(LAST_COMPARED.with_borrow_mut(|last| last.differs(current, wanted)))
}

/// A label longer than the first read, read whole into a buffer of the largest value an
/// attribute can have (`XATTR_SIZE_MAX`). `None` when there is no label any more.
fn read_long_label(target: Target<'_>) -> io::Result<Option<Vec<u8>>> {
    let mut label = vec![0u8; 64 * 1024];
    match sys::get_xattr(target, selinux::XATTR, &mut label) {
        Ok(len) => {
            label.truncate(len);
            Ok(Some(label))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

thread_local! {
    /// The last canonical comparison each walker thread made. A volume holds few distinct
    /// labels, so in a pass where every label differs nearly every entry repeats the
    /// previous one; parsing each of them again would cost as much as the syscalls.
    static LAST_COMPARED: RefCell<CanonicalCompare> = const { RefCell::new(CanonicalCompare::new()) };
}

/// One remembered answer to "does this label, once canonical, differ from the wanted one?".
struct CanonicalCompare {
    current: Vec<u8>,
    wanted: String,
    differs: bool,
}

impl CanonicalCompare {
    const fn new() -> CanonicalCompare {
        CanonicalCompare {
            current: Vec::new(),
            wanted: String::new(),
            differs: true,
        }
    }

    fn differs(&mut self, current: &[u8], wanted: &str) -> bool {
        if self.current != current || self.wanted != wanted {
            let canonical = std::str::from_utf8(current)
                .ok()
                .and_then(|s| Context::parse(s).ok())
                .map(|c| c.to_string());
            self.differs = canonical.as_deref() != Some(wanted);
            self.current.clear();
            self.current.extend_from_slice(current);
            self.wanted.clear();
            self.wanted.push_str(wanted);
        }
        self.differs
    }
}
