//! The per-entry work of a pass: read what is there, write only what differs.

use super::list::{EntryChange, FromTo, Listing, Mode};
use super::Job;
use crate::ownership::{self, Changes, Ownership, Powers, Shortfall, Step};
use crate::selinux::{self, Context};
use crate::sys::{self, Stat, Target};
use crate::walk::{Entry, OpError, Root, Visited, Visitor};
use rustix::fd::AsFd;
use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(super) struct PassVisitor {
    ownership: Option<Ownership>,
    /// The label in canonical form, as written (without a trailing NUL, as go-selinux and
    /// the container runtimes write it).
    label: Option<String>,
    dry_run: bool,
    /// A dry run's list of the entries it would change.
    listing: Option<Listing>,
    /// What the process may do: decides the order of each entry's writes.
    powers: Powers,
    /// Entries whose mode the process could not write (it does not own them).
    short_mode: AtomicU64,
    /// Entries whose setgid a chmod into a group not the process's dropped.
    short_setgid: AtomicU64,
    /// Files given away whose setuid/setgid bits the chown cleared for good.
    short_given_away: AtomicU64,
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
            listing: None,
            powers: Powers::all(),
            short_mode: AtomicU64::new(0),
            short_setgid: AtomicU64::new(0),
            short_given_away: AtomicU64::new(0),
            ignore_unsupported: job.ignore_unsupported_labels,
            unsupported: AtomicBool::new(false),
            halted: AtomicBool::new(false),
        }
    }

    /// Lists each entry a dry run would change.
    pub fn with_listing(mut self, listing: Option<Listing>) -> PassVisitor {
        self.listing = listing.filter(|_| self.dry_run);
        self
    }

    /// Orders writes for what this process may do (by default, everything).
    pub fn with_powers(mut self, powers: Powers) -> PassVisitor {
        self.powers = powers;
        self
    }

    /// How many entries lack what the process could not write, by kind.
    pub fn shortfalls(&self) -> [(Shortfall, u64); 3] {
        [
            (Shortfall::Mode, &self.short_mode),
            (Shortfall::SetGid, &self.short_setgid),
            (Shortfall::GivenAway, &self.short_given_away),
        ]
        .map(|(kind, n)| (kind, n.load(Ordering::Relaxed)))
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

    fn ownership(
        &self,
        own: &Ownership,
        entry: &Entry<'_>,
        listed: &mut Option<EntryChange>,
    ) -> Result<bool, OpError> {
        let stat = entry
            .stat
            .expect("needs_stat() asks for every entry's attributes");
        let changes = own.changes(stat);
        if changes.is_empty() {
            return Ok(false);
        }
        if self.dry_run {
            if self.listing.is_some() {
                describe(
                    own,
                    stat,
                    changes,
                    listed.get_or_insert_with(|| blank(entry)),
                );
            }
            return Ok(true);
        }
        // A pin the walker took already keeps the inode the attributes were read from.
        if entry.fd.is_none()
            && entry.pin.is_none()
            && (changes.chmod.is_some() || entry.must_pin())
        {
            return self.ownership_pinned(own, entry);
        }
        self.write_ownership(own, stat, changes, entry.target())
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
        self.write_ownership(own, &stat, changes, Target::Pinned(pinned.as_fd()))
    }

    /// The entry's chown and chmod, in the order [`ownership::writes`] gives for this
    /// process; what they cannot reach is counted, not failed. Whether anything was written.
    fn write_ownership(
        &self,
        own: &Ownership,
        stat: &Stat,
        changes: Changes,
        target: Target<'_>,
    ) -> Result<bool, OpError> {
        let writes = ownership::writes(own, stat, changes, &self.powers);
        for step in &writes.steps {
            match *step {
                Step::Chown => sys::chown(target, own.owner, own.fs_group)
                    .map_err(|e| OpError::new("chown", e))?,
                Step::Chmod(mode) => {
                    sys::chmod(target, mode).map_err(|e| OpError::new("chmod", e))?
                }
            }
        }
        let counter = match writes.shortfall {
            Some(Shortfall::Mode) => &self.short_mode,
            Some(Shortfall::SetGid) => &self.short_setgid,
            Some(Shortfall::GivenAway) => &self.short_given_away,
            None => return Ok(!writes.steps.is_empty()),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(!writes.steps.is_empty())
    }

    fn label(
        &self,
        label: &str,
        entry: &Entry<'_>,
        listed: &mut Option<EntryChange>,
    ) -> Result<bool, OpError> {
        let unread = !self.dry_run && LabelRun::write_unread(entry);
        let differs = unread
            || match label_differs(entry.target(), label) {
                Err(e) if is_unsupported(&e) => return self.unsupported(e),
                read => read.map_err(|e| OpError::new("getxattr", e))?,
            };
        if !unread {
            LabelRun::read(entry, differs);
        }
        if differs && self.listing.is_some() {
            listed.get_or_insert_with(|| blank(entry)).label = Some(FromTo {
                from: current_label(entry.target()),
                to: Some(label.to_string()),
            });
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
        let mut listed = None;
        if let Some(own) = &self.ownership {
            changed |= self.ownership(own, entry, &mut listed)?;
        }
        if let Some(label) = &self.label {
            changed |= self.label(label, entry, &mut listed)?;
        }
        if let (Some(listing), Some(change)) = (&self.listing, listed) {
            listing.add(change);
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

/// A listed entry with nothing described yet.
fn blank(entry: &Entry<'_>) -> EntryChange {
    EntryChange {
        path: entry.path(),
        uid: None,
        gid: None,
        mode: None,
        label: None,
    }
}

/// Fills in what kubelet's rules (and the owner asked for) would change on `stat`.
fn describe(own: &Ownership, stat: &Stat, changes: Changes, into: &mut EntryChange) {
    if let Some(uid) = own.owner.filter(|uid| *uid != stat.uid) {
        into.uid = Some(FromTo {
            from: stat.uid,
            to: uid,
        });
    }
    if stat.gid != own.fs_group {
        into.gid = Some(FromTo {
            from: stat.gid,
            to: own.fs_group,
        });
    }
    if let Some(mode) = changes.chmod.filter(|mode| *mode != stat.perm) {
        into.mode = Some(FromTo {
            from: Mode(stat.perm),
            to: Mode(mode),
        });
    }
}

/// The entry's label as it reads now, for a listing (`None`: no label, or unreadable).
fn current_label(target: Target<'_>) -> Option<String> {
    let mut buf = vec![0u8; 64 * 1024];
    let len = sys::get_xattr(target, selinux::XATTR, &mut buf).ok()?;
    let label = &buf[..len];
    let label = label.strip_suffix(b"\0").unwrap_or(label);
    Some(String::from_utf8_lossy(label).into_owned())
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
