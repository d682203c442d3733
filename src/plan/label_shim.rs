//! Stand-in for the SELinux label API until `crate::selinux` has it (same signatures).

use crate::selinux::Context;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeLinuxOptions {
    pub user: Option<String>,
    pub role: Option<String>,
    pub type_: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid SELinux level {0:?}")]
pub struct LabelError(String);

pub fn container_file_defaults() -> Context {
    Context::parse("system_u:object_r:container_file_t:s0").unwrap()
}

pub fn file_label(options: &SeLinuxOptions, defaults: &Context) -> Result<Context, LabelError> {
    let d = defaults.to_string();
    let parts: Vec<&str> = d.splitn(4, ':').collect();
    let user = options.user.as_deref().unwrap_or(parts[0]);
    let level = options
        .level
        .as_deref()
        .unwrap_or(parts.get(3).copied().unwrap_or("s0"));
    if !level.starts_with('s') {
        return Err(LabelError(level.to_string()));
    }
    Context::parse(&format!("{user}:{}:{}:{level}", parts[1], parts[2]))
        .map_err(|_| LabelError(level.to_string()))
}

pub fn mount_option(label: &Context) -> String {
    format!("context=\"{label}\"")
}
