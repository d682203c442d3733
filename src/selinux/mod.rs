//! SELinux file labels: the context model, the relabel rule, and the refused roots.

mod context;
mod refused;

pub use context::{Context, ParseContextError};
pub use refused::refused_root;

/// The extended attribute that holds a file's SELinux label.
pub const XATTR: &std::ffi::CStr = c"security.selinux";
