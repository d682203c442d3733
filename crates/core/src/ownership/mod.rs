//! kubelet's fsGroup ownership rules (`pkg/volume/volume_linux.go`), decided in one place.
//!
//! For every entry: the group becomes fsGroup with the owner untouched; a mask is OR-ed into
//! the mode, never removing a bit (files `0660`, directories `02770`; `0440`/`02550` on a
//! read-only volume); a symlink gets the group itself and is never chmodded. kubelet writes
//! every entry unconditionally; volsec computes the same final state and writes only what
//! differs, so a second pass over a correct tree writes nothing.
//!
//! `chown(2)` clears setuid (and setgid with group-execute) on a non-directory, even for
//! root. kubelet puts them back by chmodding to the mode read *before* the chown; so does
//! [`Ownership::changes`].
//!
//! Beyond kubelet, an owner may be asked for too ([`Ownership::owner`], `chown -R UID:GID`
//! as charts' volume-permissions init containers run it), and a process without every
//! capability (an init container with only `CAP_CHOWN`) gets its writes ordered so the
//! kernel allows them ([`writes`]).

mod policy;
mod writes;

pub use policy::{ChangePolicy, ParsePolicyError};
pub use writes::{writes, Powers, Shortfall, Step, Writes};

use crate::sys::{FileKind, Stat};
use serde::Serialize;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETUID_SETGID: u32 = libc::S_ISUID | libc::S_ISGID;
const SETGID: u32 = libc::S_ISGID;

/// The fsGroup ownership a volume must end up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ownership {
    /// The pod's `securityContext.fsGroup`.
    pub fs_group: u32,
    /// The volume is mounted read-only: masks `0440` / `02550` instead of `0660` / `02770`.
    pub read_only: bool,
    /// Also the owner every entry gets, as `chown -R UID:GID` gives it. kubelet never
    /// changes owners, so this is volsec's opt-in (`volsec apply --owner`); `None` leaves
    /// them alone, as kubelet does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
}

/// What must be written to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changes {
    /// `chown(owner or -1, fsGroup)` is needed.
    pub chown: bool,
    /// The mode to set afterwards, if any.
    pub chmod: Option<u32>,
}

impl Changes {
    /// Whether the entry is already right: nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.chown && self.chmod.is_none()
    }
}

impl Ownership {
    /// The bits OR-ed into an entry's mode; `None` for a symlink, which is never chmodded.
    pub fn mask(&self, kind: FileKind) -> Option<u32> {
        let base = if self.read_only { RO_MASK } else { RW_MASK };
        match kind {
            FileKind::Symlink => None,
            FileKind::Dir => Some(base | EXEC_MASK | SETGID),
            _ => Some(base),
        }
    }

    /// The writes that bring `stat` to kubelet's result, and nothing more.
    pub fn changes(&self, stat: &Stat) -> Changes {
        let chown = stat.gid != self.fs_group || self.owner.is_some_and(|uid| uid != stat.uid);
        let chmod = self.mask(stat.kind).and_then(|mask| {
            let wanted = stat.perm | mask;
            // chown clears setuid/setgid on a non-directory: write them back.
            let cleared_by_chown =
                chown && stat.kind != FileKind::Dir && stat.perm & SETUID_SETGID != 0;
            (wanted != stat.perm || cleared_by_chown).then_some(wanted)
        });
        Changes { chown, chmod }
    }

    /// kubelet's OnRootMismatch test (`requiresPermissionChange`): the walk can be skipped
    /// when the root is a directory whose group is fsGroup, with setgid, and whose permission
    /// bits include the mask's (`0660` or `0440`) plus `0110`. Children are never looked
    /// at, nor the owner unless one is asked for ([`Ownership::owner`]): then it must match
    /// too, so a restart with the same uid:gid is a root check only.
    pub fn root_matches(&self, root: &Stat) -> bool {
        let Some(mask) = self.mask(FileKind::Dir) else {
            return false;
        };
        root.kind == FileKind::Dir
            && root.gid == self.fs_group
            && self.owner.is_none_or(|uid| root.uid == uid)
            && root.perm & mask == mask
    }
}

/// The largest fsGroup Kubernetes accepts (its API validation: 0 to 2147483647). Above
/// it, a gid is either refused by the API or, at 4294967295, the `-1` that tells `chown`
/// "leave the group alone": a pass would report every entry changed and change none.
pub const MAX_FS_GROUP: u32 = i32::MAX as u32;

/// An fsGroup as a group id, or why it is not one.
pub fn fs_group(value: i64) -> Result<u32, FsGroupError> {
    u32::try_from(value)
        .ok()
        .filter(|g| *g <= MAX_FS_GROUP)
        .ok_or(FsGroupError(value))
}

/// A number that is not an fsGroup Kubernetes accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a valid fsGroup; expected 0 to {MAX_FS_GROUP}")]
pub struct FsGroupError(pub i64);

#[cfg(test)]
mod tests;
