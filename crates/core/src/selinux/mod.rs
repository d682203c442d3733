//! SELinux file labels: the context model, the label a pod's `seLinuxOptions` give, the
//! `-o context=` mount option, and the roots no relabel may touch.
//!
//! The relabel itself is part of the fused pass in [`crate::prepare`]; this module decides
//! what the label is and whether it may be applied, never walks a volume.

mod context;
mod label;
#[cfg(feature = "libselinux")]
pub mod libselinux;
mod node;
mod refused;

pub use context::{Context, Level, MlsRange, ParseContextError, CATEGORY_MAX, SENSITIVITY_MAX};
pub use label::{
    container_file_defaults, container_file_defaults_under, file_label, file_label_in_contexts,
    mount_option, LabelError, SeLinuxOptions, CONTAINERS_CONTEXTS, FALLBACK_FILE_LABEL,
};
pub use refused::{
    home_in_passwd, refused_among, refused_places, refused_root, Refused, SYSTEM_DIRECTORIES,
};

/// The extended attribute that holds a file's SELinux label.
pub const XATTR: &std::ffi::CStr = c"security.selinux";
pub use node::{
    canonicalize, mount_has_seclabel, mounts, parse_mountinfo, resolve_label, selinux_enabled,
    selinuxfs_mount, MountInfo, NodeError,
};

/// The label as the node will hand it back: when SELinux is enabled, checked and spelled
/// by the kernel (selinuxfs), and with the `libselinux` feature also checked by the loaded
/// policy. Every pass and the mount option go through here before anything is written.
pub fn checked_label(label: Context) -> Result<Context, CheckError> {
    let label = resolve_label(label)?;
    #[cfg(feature = "libselinux")]
    libselinux::check(&label)?;
    Ok(label)
}

/// Why the node refuses a label, or could not check it.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The kernel refused the label, or could not be asked.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The loaded policy, through libselinux, refused the label.
    #[cfg(feature = "libselinux")]
    #[error(transparent)]
    Libselinux(#[from] libselinux::LibSelinuxError),
}
