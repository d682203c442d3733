//! kubelet's own unit cases for fsGroup ownership, ported: `TestSkipPermissionChange`,
//! `TestSetVolumeOwnershipMode` and `TestSetVolumeOwnershipOwner` from kubernetes/kubernetes
//! `pkg/volume/volume_linux_test.go`.
//!
//! Each Go case becomes one Rust case that runs twice, on a fresh tmpfs and on a fresh
//! loop-mounted ext4 image, and drives the library (`volsec_core::prepare::prepare`) exactly as
//! `volsec apply` does. The Go tests start from `utiltesting.MkTmpdir` (a directory of mode
//! 0700 owned by the test's uid and gid, root here); each case starts from such a directory
//! inside the fresh filesystem, and asserts the final gid and mode kubelet's asserts check,
//! plus, where kubelet's assert is only "has at least these bits", the exact mode kubelet's
//! OR-only chmod produces.
//!
//! The Go tests create directories with `os.Mkdir(path, perm)`, which the process umask
//! (022 on the CI runners) reduces; the ports create them and then set that reduced mode
//! explicitly, so they do not depend on the umask of whoever runs them.

use crate::common::*;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use volsec_core::ownership::ChangePolicy;
use volsec_core::prepare::{PrepareError, Report, SkipReason};

/// kubelet's `rwMask`, `execMask` and `os.ModeSetgid` (as a Unix mode bit).
const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Size of the ext4 image every case on ext4 runs on.
const EXT4_MIB: u64 = 16;

/// What `utiltesting.MkTmpdir` gives the Go tests: a fresh directory of mode 0700.
fn mk_tmpdir(fs: &Mounted) -> std::path::PathBuf {
    let dir = fs.path().join("volume_linux_test");
    mkdir(&dir, 0o700);
    dir
}

/// `ownershipChanger.ChangePermissions()`: one pass of the library, as `volsec apply` runs it.
fn change_permissions(
    dir: &Path,
    fs_group: Option<u32>,
    policy: ChangePolicy,
) -> Result<Report, PrepareError> {
    prepare_fs_group(dir, fs_group, policy)
}

/// kubelet's `verifyDirectoryPermission`: at least the mask's bits plus 0110, and setgid.
fn verify_directory_permission(path: &Path, read_only: bool) -> bool {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let unix_perms = if read_only { RO_MASK } else { RW_MASK } | EXEC_MASK;
    m.mode() & unix_perms == unix_perms && m.mode() & SETGID != 0
}

/// kubelet's `verifyFileOwner`, on the entry itself (lstat).
fn verify_file_owner(path: &Path, uid: u32, gid: u32) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.uid() == uid && m.gid() == gid)
}

// ---------------------------------------------------------------------------------------
// TestSkipPermissionChange
//
// kubelet's `skipPermissionChange(mounter, dir, fsGroup, policy)` is internal; volsec's
// equivalent is observable: a skipped pass reports `skipped_reason: OnRootMismatch` and
// touches nothing below the root. Each port therefore also puts a file of mode 0600 in the
// volume, which a walk would change and a skip leaves alone. `policy=nil` (the pod field
// unset) has no spelling in volsec: the default policy, `Always`, is what kubelet uses then.

struct SkipCase {
    policy: Option<ChangePolicy>,
    gid_owner_match: bool,
    permission_match: bool,
    sgid_match: bool,
    skip_permission: bool,
}

fn skip_permission_change(fs: Fs, case: SkipCase) {
    let mounted = fs.mount(EXT4_MIB);
    let tmp_dir = mk_tmpdir(&mounted);
    let sentinel = tmp_dir.join("sentinel");
    write_file(&sentinel, 0o600);
    let info = std::fs::symlink_metadata(&tmp_dir).unwrap();
    let gid = info.gid();
    let expected_gid = if case.gid_owner_match {
        gid
    } else {
        gid + 3000
    };

    let mut mask = RW_MASK;
    if case.permission_match {
        mask |= EXEC_MASK;
    }
    let mode = if case.sgid_match {
        info.mode() & 0o7777 | mask | SETGID
    } else {
        info.mode() & 0o7777 & !SETGID | mask
    };
    std::fs::set_permissions(&tmp_dir, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    let sentinel_before = ctime_ns(&sentinel);

    let policy = case.policy.unwrap_or_default();
    let report = change_permissions(&tmp_dir, Some(expected_gid), policy)
        .unwrap_or_else(|e| panic!("{fs:?}: the pass was refused: {e}"));

    let skipped = report.skipped_reason == Some(SkipReason::OnRootMismatch);
    assert_eq!(
        skipped, case.skip_permission,
        "{fs:?}: root mode {mode:o}, gid {gid}, fsGroup {expected_gid}, policy {policy}: \
         expected skipPermission {}, got {skipped} (report: {report:?})",
        case.skip_permission
    );
    if case.skip_permission {
        assert_eq!(
            (gid_mode(&sentinel), ctime_ns(&sentinel)),
            ((gid, 0o600), sentinel_before),
            "{fs:?}: a skipped pass must leave everything below the root alone"
        );
        assert_eq!(
            report.tally.changed, 0,
            "{fs:?}: a skipped pass changes nothing"
        );
    } else {
        assert_eq!(
            gid_mode(&sentinel),
            (expected_gid, 0o660),
            "{fs:?}: a pass that is not skipped walks the whole volume"
        );
    }
}

fn skip_policy_nil(fs: Fs) {
    assert_eq!(
        ChangePolicy::default(),
        ChangePolicy::Always,
        "an unset policy is Always"
    );
    skip_permission_change(
        fs,
        SkipCase {
            policy: None,
            gid_owner_match: false,
            permission_match: false,
            sgid_match: false,
            skip_permission: false,
        },
    );
}

fn skip_policy_always(fs: Fs) {
    skip_permission_change(
        fs,
        SkipCase {
            policy: Some(ChangePolicy::Always),
            gid_owner_match: false,
            permission_match: false,
            sgid_match: false,
            skip_permission: false,
        },
    );
}

fn skip_policy_always_gidmatch(fs: Fs) {
    skip_permission_change(
        fs,
        SkipCase {
            policy: Some(ChangePolicy::Always),
            gid_owner_match: true,
            permission_match: false,
            sgid_match: false,
            skip_permission: false,
        },
    );
}

fn skip_policy_nil_gidmatch(fs: Fs) {
    skip_permission_change(
        fs,
        SkipCase {
            policy: None,
            gid_owner_match: true,
            permission_match: false,
            sgid_match: false,
            skip_permission: false,
        },
    );
}

fn skip_onrootmismatch_gid_mismatch(fs: Fs) {
    skip_permission_change(
        fs,
        SkipCase {
            policy: Some(ChangePolicy::OnRootMismatch),
            gid_owner_match: false,
            permission_match: false,
            sgid_match: false,
            skip_permission: false,
        },
    );
}

fn skip_onrootmismatch_gidmatch_perm_mismatch(fs: Fs) {
    skip_permission_change(
        fs,
        SkipCase {
            policy: Some(ChangePolicy::OnRootMismatch),
            gid_owner_match: true,
            permission_match: false,
            sgid_match: false,
            skip_permission: false,
        },
    );
}

fn skip_onrootmismatch_gidmatch_permmatch_no_sgid(fs: Fs) {
    skip_permission_change(
        fs,
        SkipCase {
            policy: Some(ChangePolicy::OnRootMismatch),
            gid_owner_match: true,
            permission_match: true,
            sgid_match: false,
            skip_permission: false,
        },
    );
}

fn skip_onrootmismatch_all_match(fs: Fs) {
    skip_permission_change(
        fs,
        SkipCase {
            policy: Some(ChangePolicy::OnRootMismatch),
            gid_owner_match: true,
            permission_match: true,
            sgid_match: true,
            skip_permission: true,
        },
    );
}

on_tmpfs_and_ext4!(
    skip_policy_nil,
    skip_policy_always,
    skip_policy_always_gidmatch,
    skip_policy_nil_gidmatch,
    skip_onrootmismatch_gid_mismatch,
    skip_onrootmismatch_gidmatch_perm_mismatch,
    skip_onrootmismatch_gidmatch_permmatch_no_sgid,
    skip_onrootmismatch_all_match,
);

// ---------------------------------------------------------------------------------------
// TestSetVolumeOwnershipMode
//
// fsGroup is the tmpdir's own gid in all three cases, so only modes change. The Go test
// passes a mounter whose path does not exist to prove the pass relies on the directory it
// is given; volsec only ever has the directory, so there is nothing to port there.

const EXPECTED_MASK: u32 = RW_MASK | SETGID | EXEC_MASK;

fn ownership_mode_always(fs: Fs) {
    let mounted = fs.mount(EXT4_MIB);
    let tmp_dir = mk_tmpdir(&mounted);
    let gid = std::fs::symlink_metadata(&tmp_dir).unwrap().gid();
    let info_mode = std::fs::symlink_metadata(&tmp_dir).unwrap().mode() & 0o7777;
    // The root already right...
    mkdir(&tmp_dir, info_mode | EXPECTED_MASK);
    // ...and a subdirectory with invalid permissions (0700 &^ setgid).
    let rogue_dir = tmp_dir.join("roguedir");
    mkdir(&rogue_dir, info_mode & !SETGID);

    change_permissions(&tmp_dir, Some(gid), ChangePolicy::Always)
        .unwrap_or_else(|e| panic!("{fs:?}: the pass was refused: {e}"));

    assert!(
        verify_directory_permission(&rogue_dir, false),
        "{fs:?}: policy Always must fix {} although the root was right",
        rogue_dir.display()
    );
    assert_eq!(gid_mode(&rogue_dir), (gid, 0o2770), "{fs:?}: 0700 | 02770");
}

fn ownership_mode_onrootmismatch_valid_root(fs: Fs) {
    let mounted = fs.mount(EXT4_MIB);
    let tmp_dir = mk_tmpdir(&mounted);
    let gid = std::fs::symlink_metadata(&tmp_dir).unwrap().gid();
    let info_mode = std::fs::symlink_metadata(&tmp_dir).unwrap().mode() & 0o7777;
    mkdir(&tmp_dir, info_mode | EXPECTED_MASK);
    // os.Mkdir(rogueDir, rwMask) under umask 022.
    let rogue_dir = tmp_dir.join("roguedir");
    mkdir(&rogue_dir, RW_MASK & !0o022);

    let report = change_permissions(&tmp_dir, Some(gid), ChangePolicy::OnRootMismatch)
        .unwrap_or_else(|e| panic!("{fs:?}: the pass was refused: {e}"));

    assert!(
        !verify_directory_permission(&rogue_dir, false),
        "{fs:?}: OnRootMismatch with a valid root must not touch {}",
        rogue_dir.display()
    );
    assert_eq!(
        gid_mode(&rogue_dir),
        (gid, 0o640),
        "{fs:?}: roguedir untouched"
    );
    assert_eq!(
        report.skipped_reason,
        Some(SkipReason::OnRootMismatch),
        "{fs:?}"
    );
}

fn ownership_mode_onrootmismatch_invalid_root(fs: Fs) {
    let mounted = fs.mount(EXT4_MIB);
    let tmp_dir = mk_tmpdir(&mounted);
    let gid = std::fs::symlink_metadata(&tmp_dir).unwrap().gid();
    mkdir(&tmp_dir, 0o770);
    let rogue_dir = tmp_dir.join("roguedir");
    mkdir(&rogue_dir, RW_MASK & !0o022);

    let report = change_permissions(&tmp_dir, Some(gid), ChangePolicy::OnRootMismatch)
        .unwrap_or_else(|e| panic!("{fs:?}: the pass was refused: {e}"));

    assert!(
        verify_directory_permission(&rogue_dir, false),
        "{fs:?}: OnRootMismatch with a root lacking setgid must walk and fix {}",
        rogue_dir.display()
    );
    assert_eq!(gid_mode(&rogue_dir), (gid, 0o2770), "{fs:?}: 0640 | 02770");
    assert_eq!(
        gid_mode(&tmp_dir),
        (gid, 0o2770),
        "{fs:?}: the root is fixed last"
    );
    assert_eq!(report.skipped_reason, None, "{fs:?}");
}

on_tmpfs_and_ext4!(
    ownership_mode_always,
    ownership_mode_onrootmismatch_valid_root,
    ownership_mode_onrootmismatch_invalid_root,
);

// ---------------------------------------------------------------------------------------
// TestSetVolumeOwnershipOwner (kubelet skips it when not root; these tests require root).

const FS_GROUP: u32 = 3000;

fn current_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getgid().as_raw(),
    )
}

/// `os.OpenFile(file.txt, O_RDWR|O_CREATE, 0755)`.
fn create_file_txt(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("file.txt");
    write_file(&file, 0o755);
    file
}

fn owner_fs_group_nil(fs: Fs) {
    let mounted = fs.mount(EXT4_MIB);
    let tmp_dir = mk_tmpdir(&mounted);
    let file = create_file_txt(&tmp_dir);
    let (uid, gid) = current_ids();
    let before = ctime_ns(&file);

    // kubelet returns early with no error; volsec refuses a pass with nothing to do (exit
    // code 2 in the CLI). Either way nothing on disk changes, which is what the Go case
    // asserts.
    let result = change_permissions(&tmp_dir, None, ChangePolicy::Always);
    assert!(
        matches!(result, Err(PrepareError::NothingAsked)),
        "{fs:?}: no fsGroup and no label is nothing to do, got {result:?}"
    );
    assert!(
        verify_file_owner(&file, uid, gid),
        "{fs:?}: invalid owner on {}",
        file.display()
    );
    assert_eq!(gid_mode(&file), (gid, 0o755), "{fs:?}: mode untouched");
    assert_eq!(ctime_ns(&file), before, "{fs:?}: nothing written");
}

fn owner_fs_group_3000(fs: Fs) {
    let mounted = fs.mount(EXT4_MIB);
    let tmp_dir = mk_tmpdir(&mounted);
    let file = create_file_txt(&tmp_dir);
    let (uid, _) = current_ids();

    change_permissions(&tmp_dir, Some(FS_GROUP), ChangePolicy::Always)
        .unwrap_or_else(|e| panic!("{fs:?}: the pass was refused: {e}"));

    assert!(
        verify_file_owner(&file, uid, FS_GROUP),
        "{fs:?}: invalid owner on {}: {:?}",
        file.display(),
        std::fs::symlink_metadata(&file).map(|m| (m.uid(), m.gid()))
    );
    assert_eq!(gid_mode(&file), (FS_GROUP, 0o775), "{fs:?}: 0755 | 0660");
    assert_eq!(
        gid_mode(&tmp_dir),
        (FS_GROUP, 0o2770),
        "{fs:?}: 0700 | 02770"
    );
}

fn owner_symlink(fs: Fs) {
    let mounted = fs.mount(EXT4_MIB);
    let tmp_dir = mk_tmpdir(&mounted);
    let file = create_file_txt(&tmp_dir);
    let symname = tmp_dir.join("file_link.txt");
    std::os::unix::fs::symlink(&file, &symname).unwrap();
    let (uid, _) = current_ids();

    change_permissions(&tmp_dir, Some(FS_GROUP), ChangePolicy::Always)
        .unwrap_or_else(|e| panic!("{fs:?}: the pass was refused: {e}"));

    assert!(
        verify_file_owner(&symname, uid, FS_GROUP),
        "{fs:?}: invalid owner on the symlink {} itself",
        symname.display()
    );
    assert!(
        std::fs::symlink_metadata(&symname)
            .unwrap()
            .file_type()
            .is_symlink(),
        "{fs:?}: still a symlink"
    );
    assert_eq!(
        std::fs::read_link(&symname).unwrap(),
        file,
        "{fs:?}: target untouched"
    );
}

on_tmpfs_and_ext4!(owner_fs_group_nil, owner_fs_group_3000, owner_symlink);
