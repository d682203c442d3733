//! SELinux file labels: the context model, the label a pod's `seLinuxOptions` give, the
//! `-o context=` mount option, and the roots no relabel may touch.
//!
//! The relabel itself is part of the fused pass in [`crate::prepare`]; this module decides
//! what the label is and whether it may be applied, never walks a volume.

mod context;
mod label;
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
