//! In which order an entry's chown and chmod are made, given what the process may do.
//!
//! kubelet runs as root with every capability and writes `chown` then `chmod(old | mask)`.
//! A chart's volume-permissions init container is a uid-0 process with only `CAP_CHOWN`:
//! without `CAP_FOWNER` the kernel allows `chmod` only to the entry's owner, and without
//! `CAP_FSETID` it silently drops setgid from a `chmod` when the entry's group (as it is
//! at that moment) is not one of the process's groups. `chown` of a non-directory always
//! clears setuid, and setgid with group-execute (or a group not the process's). So the
//! order decides what can be reached:
//!
//! - kubelet's order whenever it reaches kubelet's result;
//! - otherwise `chmod` first, while the process still owns the entry and its group is
//!   still the old one (setgid on a directory survives the `chown` that follows), then
//!   `chown`, then once more `chmod` where `chown` cleared bits and the process still owns
//!   the entry;
//! - what no order reaches (a mode on an entry the process does not own, setuid/setgid on a
//!   file given away) is left and counted as a [`Shortfall`], for one sentence per kind in
//!   the report, instead of one failure per entry. The group and owner are still changed.
//!
//! With every capability this is exactly kubelet's order and result.

use super::{Changes, Ownership};
use crate::sys::{FileKind, Stat};

const SETUID: u32 = libc::S_ISUID;
const SETGID: u32 = libc::S_ISGID;
const GROUP_EXEC: u32 = libc::S_IXGRP;

/// What the process may do to entries it does not own: its effective uid and groups, and
/// the capabilities that matter to a chown and a chmod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Powers {
    /// The effective uid: the owner the kernel lets chmod without `CAP_FOWNER`.
    pub uid: u32,
    /// The effective gid and supplementary groups: a chmod keeps setgid on an entry whose
    /// group is one of them, without `CAP_FSETID`.
    pub groups: Vec<u32>,
    /// `CAP_CHOWN`: change any entry's owner and group.
    pub chown: bool,
    /// `CAP_FOWNER`: chmod entries the process does not own.
    pub fowner: bool,
    /// `CAP_FSETID`: keep setgid whatever the entry's group.
    pub fsetid: bool,
}

impl Powers {
    /// A process that may do everything kubelet does (root with every capability).
    pub fn all() -> Powers {
        Powers {
            uid: 0,
            groups: vec![0],
            chown: true,
            fowner: true,
            fsetid: true,
        }
    }

    /// What this process may do: its effective uid, gid and groups, and its effective
    /// capabilities (a read of them that fails counts as none).
    pub fn current() -> Powers {
        use rustix::thread::CapabilitySet as Cap;
        let effective = rustix::thread::capabilities(None)
            .map(|sets| sets.effective)
            .unwrap_or(Cap::empty());
        let mut groups = vec![rustix::process::getegid().as_raw()];
        if let Ok(more) = rustix::process::getgroups() {
            groups.extend(more.into_iter().map(|g| g.as_raw()));
        }
        Powers {
            uid: rustix::process::geteuid().as_raw(),
            groups,
            chown: effective.contains(Cap::CHOWN),
            fowner: effective.contains(Cap::FOWNER),
            fsetid: effective.contains(Cap::FSETID),
        }
    }

    /// Whether a chmod keeps setgid on an entry whose group is `gid`.
    fn keeps_setgid(&self, gid: u32) -> bool {
        self.fsetid || self.groups.contains(&gid)
    }

    /// Whether the process may chmod an entry owned by `uid`.
    fn may_chmod(&self, uid: u32) -> bool {
        self.fowner || self.uid == uid
    }
}

/// One write, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `chown(owner or -1, fsGroup)`.
    Chown,
    /// `chmod` to this mode.
    Chmod(u32),
}

/// What the process cannot reach on an entry, and the capability that would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// The mode: the process does not own the entry (`CAP_FOWNER`).
    Mode,
    /// setgid, which a chmod by the owner drops when the entry's group is not one of the
    /// process's (`CAP_FSETID`).
    SetGid,
    /// setuid/setgid that the chown of a file given away cleared, and that only its new
    /// owner may put back (`CAP_FOWNER`).
    GivenAway,
}

/// The writes for one entry, in order, and what they cannot reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writes {
    /// At most three: chmod, chown, chmod.
    pub steps: Vec<Step>,
    /// What the entry still lacks after them.
    pub shortfall: Option<Shortfall>,
}

/// The writes that bring `stat` as near kubelet's result (and the owner asked for) as
/// `powers` allow. `changes` is [`Ownership::changes`] of `stat`.
pub fn writes(own: &Ownership, stat: &Stat, changes: Changes, powers: &Powers) -> Writes {
    let mut w = Writes::default();
    let Some(wanted) = changes.chmod else {
        if changes.chown {
            w.steps.push(Step::Chown);
        }
        return w;
    };
    if !changes.chown {
        if powers.may_chmod(stat.uid) {
            w.steps.push(Step::Chmod(wanted));
            if dropped_setgid(wanted, stat.gid, powers) {
                w.shortfall = Some(Shortfall::SetGid);
            }
        } else {
            w.shortfall = Some(Shortfall::Mode);
        }
        return w;
    }
    let new_uid = own.owner.unwrap_or(stat.uid);
    let before = powers.may_chmod(stat.uid);
    let after = powers.may_chmod(new_uid);
    // kubelet's order, when it reaches kubelet's result (always, with every capability).
    if after && (!before || !dropped_setgid(wanted, own.fs_group, powers)) {
        w.steps.extend([Step::Chown, Step::Chmod(wanted)]);
        if dropped_setgid(wanted, own.fs_group, powers) {
            w.shortfall = Some(Shortfall::SetGid);
        }
        return w;
    }
    if !before {
        w.steps.push(Step::Chown);
        w.shortfall = Some(Shortfall::Mode);
        return w;
    }
    // chmod while the process owns the entry and its group is the old one, then chown.
    let mut mode = wanted;
    if dropped_setgid(mode, stat.gid, powers) {
        mode &= !SETGID;
    }
    w.steps.extend([Step::Chmod(wanted), Step::Chown]);
    if stat.kind != FileKind::Dir {
        mode &= !cleared_by_chown(mode, stat.gid, powers);
    }
    if mode != wanted && after {
        w.steps.push(Step::Chmod(wanted));
        mode = wanted;
        if dropped_setgid(mode, own.fs_group, powers) {
            mode &= !SETGID;
        }
    }
    if mode != wanted {
        w.shortfall = Some(if after {
            Shortfall::SetGid
        } else {
            Shortfall::GivenAway
        });
    }
    w
}

/// Whether a chmod to `mode` of an entry in group `gid` loses setgid.
fn dropped_setgid(mode: u32, gid: u32, powers: &Powers) -> bool {
    mode & SETGID != 0 && !powers.keeps_setgid(gid)
}

/// The bits a chown clears on a non-directory of `mode` in group `gid`.
fn cleared_by_chown(mode: u32, gid: u32, powers: &Powers) -> u32 {
    let setgid = mode & SETGID != 0 && (mode & GROUP_EXEC != 0 || !powers.keeps_setgid(gid));
    (mode & SETUID) | if setgid { SETGID } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(kind: FileKind, uid: u32, gid: u32, perm: u32) -> Stat {
        Stat {
            kind,
            perm,
            uid,
            gid,
            dev: 1,
            ino: 1,
            mnt_id: 1,
            nlink: 1,
        }
    }

    const GROUP: Ownership = Ownership {
        fs_group: 2000,
        read_only: false,
        owner: None,
    };
    const OWNER: Ownership = Ownership {
        fs_group: 2000,
        read_only: false,
        owner: Some(1001),
    };

    /// uid 0 in group 0 with only CAP_CHOWN, as a chart's init container runs.
    fn chown_only() -> Powers {
        Powers {
            uid: 0,
            groups: vec![0],
            chown: true,
            fowner: false,
            fsetid: false,
        }
    }

    fn plan(own: &Ownership, s: Stat, powers: &Powers) -> Writes {
        writes(own, &s, own.changes(&s), powers)
    }

    #[test]
    fn every_capability_is_kubelets_order() {
        let s = stat(FileKind::File, 5, 0, 0o4755);
        let w = plan(&GROUP, s, &Powers::all());
        assert_eq!(w.steps, [Step::Chown, Step::Chmod(0o4775)]);
        assert_eq!(w.shortfall, None);
        let w = plan(&OWNER, stat(FileKind::Dir, 5, 0, 0o755), &Powers::all());
        assert_eq!(w.steps, [Step::Chown, Step::Chmod(0o2775)]);
    }

    #[test]
    fn own_directory_is_chmodded_before_it_is_given_away() {
        let w = plan(&OWNER, stat(FileKind::Dir, 0, 0, 0o755), &chown_only());
        assert_eq!(w.steps, [Step::Chmod(0o2775), Step::Chown]);
        assert_eq!(w.shortfall, None);
        // Kept by root: chown first would lose setgid (2000 is not the process's group).
        let w = plan(&GROUP, stat(FileKind::Dir, 0, 0, 0o755), &chown_only());
        assert_eq!(w.steps, [Step::Chmod(0o2775), Step::Chown]);
        assert_eq!(w.shortfall, None);
    }

    #[test]
    fn own_file_kept_gets_setuid_back() {
        let w = plan(&GROUP, stat(FileKind::File, 0, 0, 0o4755), &chown_only());
        assert_eq!(w.steps, [Step::Chown, Step::Chmod(0o4775)]);
        assert_eq!(w.shortfall, None);
    }

    #[test]
    fn own_file_given_away_loses_setuid() {
        let w = plan(&OWNER, stat(FileKind::File, 0, 0, 0o4755), &chown_only());
        assert_eq!(w.steps, [Step::Chmod(0o4775), Step::Chown]);
        assert_eq!(w.shortfall, Some(Shortfall::GivenAway));
        let w = plan(&OWNER, stat(FileKind::File, 0, 0, 0o644), &chown_only());
        assert_eq!(w.steps, [Step::Chmod(0o664), Step::Chown]);
        assert_eq!(w.shortfall, None);
    }

    #[test]
    fn others_entries_get_owner_and_group_only() {
        let w = plan(&OWNER, stat(FileKind::File, 7, 7, 0o644), &chown_only());
        assert_eq!(w.steps, [Step::Chown]);
        assert_eq!(w.shortfall, Some(Shortfall::Mode));
        let w = plan(&OWNER, stat(FileKind::File, 7, 7, 0o664), &chown_only());
        assert_eq!(w.steps, [Step::Chown]);
        assert_eq!(w.shortfall, None);
        let w = plan(
            &OWNER,
            stat(FileKind::Dir, 1001, 2000, 0o755),
            &chown_only(),
        );
        assert_eq!(w.steps, []);
        assert_eq!(w.shortfall, Some(Shortfall::Mode));
    }

    #[test]
    fn setgid_into_a_foreign_group_is_counted() {
        // A setgid file of root's kept by root: chmod after the chown, into group 2000.
        let w = plan(&GROUP, stat(FileKind::File, 0, 0, 0o2755), &chown_only());
        assert_eq!(
            w.steps,
            [Step::Chmod(0o2775), Step::Chown, Step::Chmod(0o2775)]
        );
        assert_eq!(w.shortfall, Some(Shortfall::SetGid));
        // In the process's groups, it stays.
        let mut member = chown_only();
        member.groups.push(2000);
        let w = plan(&GROUP, stat(FileKind::File, 0, 0, 0o2755), &member);
        assert_eq!(w.steps, [Step::Chown, Step::Chmod(0o2775)]);
        assert_eq!(w.shortfall, None);
    }

    #[test]
    fn right_entries_need_nothing() {
        let s = stat(FileKind::Dir, 1001, 2000, 0o2775);
        assert_eq!(plan(&OWNER, s, &chown_only()), Writes::default());
        let s = stat(FileKind::Symlink, 0, 0, 0o777);
        assert_eq!(plan(&OWNER, s, &chown_only()).steps, [Step::Chown]);
    }
}
