//! What a NodePublishVolume asks of the proxy: kubelet's `supportsFSGroup` decision, the
//! per-volume change policy, the masks, and the SELinux label taken from `mount_flags`.
//!
//! Once a driver lists VOLUME_MOUNT_GROUP, kubelet sends the fsGroup whatever
//! `CSIDriver.spec.fsGroupPolicy` says, read-only volumes included, and never sends
//! `fsGroupChangePolicy`. So the proxy decides as kubelet would have
//! (`pkg/volume/csi/csi_mounter.go`, `supportsFSGroup`), with the policy given by flag.

use super::wire::{access_mode, context_flag_label, is_context_flag, VolumeRequest};
use std::str::FromStr;
use volsec_core::ownership::{ChangePolicy, Ownership};
use volsec_core::selinux::Context;

/// The `volume_context` key that overrides `--change-policy` for one volume (set it in the
/// StorageClass parameters or the PersistentVolume's `volumeAttributes`).
pub const CHANGE_POLICY_KEY: &str = "volsec.io/fs-group-change-policy";

/// The `volume_context` key kubelet sets on inline ephemeral CSI volumes (with
/// `podInfoOnMount`).
pub const EPHEMERAL_KEY: &str = "csi.storage.k8s.io/ephemeral";

/// `CSIDriver.spec.fsGroupPolicy`, as the driver's CSIDriver object declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsGroupPolicy {
    /// Never change ownership.
    None,
    /// Always change ownership when the pod has an fsGroup.
    File,
    /// kubelet's default: only with an fsType and a ReadWriteOnce(-Pod) volume.
    #[default]
    ReadWriteOnceWithFSType,
}

impl FsGroupPolicy {
    pub fn as_str(&self) -> &'static str {
        match self {
            FsGroupPolicy::None => "None",
            FsGroupPolicy::File => "File",
            FsGroupPolicy::ReadWriteOnceWithFSType => "ReadWriteOnceWithFSType",
        }
    }
}

/// A `--fs-group-policy` that is none of the three.
#[derive(Debug, thiserror::Error)]
#[error("unknown fsGroupPolicy {0:?}: expected File, ReadWriteOnceWithFSType or None")]
pub struct ParseFsGroupPolicyError(pub String);

impl FromStr for FsGroupPolicy {
    type Err = ParseFsGroupPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "None" => Ok(FsGroupPolicy::None),
            "File" => Ok(FsGroupPolicy::File),
            "ReadWriteOnceWithFSType" => Ok(FsGroupPolicy::ReadWriteOnceWithFSType),
            other => Err(ParseFsGroupPolicyError(other.to_string())),
        }
    }
}

/// Why no fsGroup is applied to a volume (kubelet would not have either).
pub type SkipReason = &'static str;

/// kubelet's `supportsFSGroup` for a published volume: `Ok(())` to apply the fsGroup, or
/// the reason not to.
pub fn fs_group_eligible(policy: FsGroupPolicy, r: &VolumeRequest) -> Result<(), SkipReason> {
    if r.volume_mount_group.is_none() {
        return Err("no fsGroup");
    }
    if r.block || !r.mount {
        return Err("block volume");
    }
    if r.readonly {
        return Err("read-only");
    }
    match policy {
        FsGroupPolicy::None => Err("fsGroupPolicy None"),
        FsGroupPolicy::File => Ok(()),
        FsGroupPolicy::ReadWriteOnceWithFSType => {
            if r.fs_type.is_empty() {
                return Err("ReadWriteOnceWithFSType and no fsType");
            }
            // An inline volume has no access modes to check; kubelet lets it through.
            if r.volume_context.get(EPHEMERAL_KEY).map(String::as_str) == Some("true") {
                return Ok(());
            }
            // RWO and RWOP both arrive as a SINGLE_NODE_* mode.
            if access_mode::is_single_node(r.access_mode) {
                Ok(())
            } else {
                Err("ReadWriteOnceWithFSType and not a single-node access mode")
            }
        }
    }
}

/// Why a request cannot be served; each is one sentence, answered as INVALID_ARGUMENT.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("volume_mount_group {0:?} is not a valid fsGroup: expected a decimal group id from 0 to {max}", max = volsec_core::ownership::MAX_FS_GROUP)]
    FsGroup(String),
    #[error("volume_context[{key:?}] = {value:?}: expected Always or OnRootMismatch", key = CHANGE_POLICY_KEY)]
    ChangePolicy { value: String },
    #[error("mount_flags {flag:?}: not a valid SELinux context: {reason}")]
    Label { flag: String, reason: String },
}

/// The fsGroup kubelet sent, as a group id.
pub fn parse_fs_group(value: &str) -> Result<u32, BadRequest> {
    let bad = || BadRequest::FsGroup(value.to_string());
    // Only plain decimal digits: kubelet formats an int64 with strconv.FormatInt.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = value.parse().map_err(|_| bad())?;
    volsec_core::ownership::fs_group(n).map_err(|_| bad())
}

/// The change policy for one volume: its `volume_context` key if set, else the flag's.
pub fn change_policy(default: ChangePolicy, r: &VolumeRequest) -> Result<ChangePolicy, BadRequest> {
    match r.volume_context.get(CHANGE_POLICY_KEY) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| BadRequest::ChangePolicy { value: v.clone() }),
    }
}

/// The label of the (last) `context=` element of `mount_flags`, if any.
pub fn context_label(r: &VolumeRequest) -> Result<Option<Context>, BadRequest> {
    let Some(flag) = r.mount_flags.iter().rev().find(|f| is_context_flag(f)) else {
        return Ok(None);
    };
    let label = context_flag_label(flag).unwrap_or_default();
    Context::parse(label)
        .map(Some)
        .map_err(|e| BadRequest::Label {
            flag: flag.clone(),
            reason: e.to_string(),
        })
}

/// The ownership for an eligible volume: read-only masks when the volume or its access
/// mode is read-only.
pub fn ownership(fs_group: u32, r: &VolumeRequest) -> Ownership {
    Ownership {
        fs_group,
        read_only: r.readonly || access_mode::is_reader_only(r.access_mode),
        owner: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use access_mode::*;

    fn req(fs_type: &str, mode: i32) -> VolumeRequest {
        VolumeRequest {
            mount: true,
            fs_type: fs_type.into(),
            access_mode: mode,
            volume_mount_group: Some("2000".into()),
            ..Default::default()
        }
    }

    #[test]
    fn kubelet_supports_fs_group() {
        use FsGroupPolicy::*;
        let modes = [
            SINGLE_NODE_WRITER,
            SINGLE_NODE_READER_ONLY,
            MULTI_NODE_READER_ONLY,
            MULTI_NODE_SINGLE_WRITER,
            MULTI_NODE_MULTI_WRITER,
            SINGLE_NODE_SINGLE_WRITER,
            SINGLE_NODE_MULTI_WRITER,
        ];
        for mode in modes {
            for fs in ["", "ext4"] {
                let r = req(fs, mode);
                assert!(fs_group_eligible(None, &r).is_err());
                assert!(fs_group_eligible(File, &r).is_ok());
                let expect = !fs.is_empty() && is_single_node(mode);
                assert_eq!(
                    fs_group_eligible(ReadWriteOnceWithFSType, &r).is_ok(),
                    expect,
                    "{fs:?} {}",
                    name(mode)
                );
            }
        }
        let mut ro = req("ext4", SINGLE_NODE_WRITER);
        ro.readonly = true;
        assert_eq!(fs_group_eligible(File, &ro), Err("read-only"));
        let mut none = req("ext4", SINGLE_NODE_WRITER);
        none.volume_mount_group = Option::None;
        assert!(fs_group_eligible(File, &none).is_err());
        let mut block = req("", SINGLE_NODE_WRITER);
        block.block = true;
        block.mount = false;
        assert_eq!(fs_group_eligible(File, &block), Err("block volume"));
        let mut inline = req("ext4", MULTI_NODE_MULTI_WRITER);
        inline
            .volume_context
            .insert(EPHEMERAL_KEY.into(), "true".into());
        assert!(fs_group_eligible(ReadWriteOnceWithFSType, &inline).is_ok());
    }

    #[test]
    fn fs_groups() {
        assert_eq!(parse_fs_group("2000").unwrap(), 2000);
        assert_eq!(parse_fs_group("0").unwrap(), 0);
        for bad in ["abc", "-1", "4294967295", "", " 1", "+5", "2147483648"] {
            assert!(parse_fs_group(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn per_volume_policy_and_masks() {
        let mut r = req("ext4", MULTI_NODE_READER_ONLY);
        assert_eq!(
            change_policy(ChangePolicy::Always, &r).unwrap(),
            ChangePolicy::Always
        );
        r.volume_context
            .insert(CHANGE_POLICY_KEY.into(), "OnRootMismatch".into());
        assert_eq!(
            change_policy(ChangePolicy::Always, &r).unwrap(),
            ChangePolicy::OnRootMismatch
        );
        r.volume_context
            .insert(CHANGE_POLICY_KEY.into(), "Sometimes".into());
        assert!(change_policy(ChangePolicy::Always, &r).is_err());
        assert!(ownership(1, &r).read_only);
        assert!(!ownership(1, &req("ext4", SINGLE_NODE_WRITER)).read_only);
    }

    #[test]
    fn labels_from_mount_flags() {
        let mut r = req("ext4", SINGLE_NODE_WRITER);
        assert!(context_label(&r).unwrap().is_none());
        r.mount_flags = vec![
            "noatime".into(),
            "context=\"system_u:object_r:container_file_t:s0:c1,c2\"".into(),
        ];
        assert_eq!(
            context_label(&r).unwrap().unwrap().to_string(),
            "system_u:object_r:container_file_t:s0:c1,c2"
        );
        r.mount_flags = vec!["context=\"nonsense\"".into()];
        assert!(context_label(&r).is_err());
    }
}
