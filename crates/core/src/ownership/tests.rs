//! The rules on synthetic `Stat`s. kubelet's own cases, on a real filesystem, are in
//! `tests/kubelet_conformance.rs`.

use super::*;

fn stat(kind: FileKind, perm: u32, gid: u32) -> Stat {
    Stat {
        kind,
        perm,
        uid: 0,
        gid,
        dev: 1,
        ino: 1,
        mnt_id: 1,
        nlink: 1,
    }
}

const RW: Ownership = Ownership {
    fs_group: 2000,
    read_only: false,
    owner: None,
};
const RO: Ownership = Ownership {
    fs_group: 2000,
    read_only: true,
    owner: None,
};

#[test]
fn masks_are_kubelets() {
    assert_eq!(RW.mask(FileKind::File), Some(0o660));
    assert_eq!(RW.mask(FileKind::Dir), Some(0o2770));
    assert_eq!(RO.mask(FileKind::File), Some(0o440));
    assert_eq!(RO.mask(FileKind::Dir), Some(0o2550));
    assert_eq!(RW.mask(FileKind::Symlink), None);
    assert_eq!(RW.mask(FileKind::Fifo), Some(0o660));
}

#[test]
fn bits_are_only_added() {
    let c = RW.changes(&stat(FileKind::File, 0o707, 2000));
    assert_eq!(
        c,
        Changes {
            chown: false,
            chmod: Some(0o767)
        }
    );
}

#[test]
fn correct_entry_needs_nothing() {
    assert!(RW.changes(&stat(FileKind::File, 0o664, 2000)).is_empty());
    assert!(RW.changes(&stat(FileKind::Dir, 0o2775, 2000)).is_empty());
    assert!(RW.changes(&stat(FileKind::Symlink, 0o777, 2000)).is_empty());
}

#[test]
fn symlink_gets_group_only() {
    let c = RW.changes(&stat(FileKind::Symlink, 0o777, 0));
    assert_eq!(
        c,
        Changes {
            chown: true,
            chmod: None
        }
    );
}

#[test]
fn setuid_is_restored_after_chown() {
    // The mode is already a superset of the mask, but chown clears setuid: chmod again.
    let c = RW.changes(&stat(FileKind::File, 0o4775, 0));
    assert_eq!(
        c,
        Changes {
            chown: true,
            chmod: Some(0o4775)
        }
    );
    // Without a chown nothing is cleared.
    assert!(RW.changes(&stat(FileKind::File, 0o4775, 2000)).is_empty());
}

#[test]
fn root_test_is_kubelets() {
    assert!(RW.root_matches(&stat(FileKind::Dir, 0o2770, 2000)));
    assert!(RW.root_matches(&stat(FileKind::Dir, 0o2777, 2000)));
    assert!(
        !RW.root_matches(&stat(FileKind::Dir, 0o770, 2000)),
        "no setgid"
    );
    assert!(
        !RW.root_matches(&stat(FileKind::Dir, 0o2760, 2000)),
        "no group x"
    );
    assert!(!RW.root_matches(&stat(FileKind::Dir, 0o2770, 2001)), "gid");
    assert!(
        !RW.root_matches(&stat(FileKind::File, 0o2770, 2000)),
        "not a dir"
    );
    assert!(RO.root_matches(&stat(FileKind::Dir, 0o2550, 2000)));
    assert!(!RO.root_matches(&stat(FileKind::Dir, 0o2450, 2000)));
}
