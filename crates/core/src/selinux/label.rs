//! The file label of a volume, completed from a pod's `seLinuxOptions` as kubelet does.
//!
//! kubelet turns `seLinuxOptions` into a file label with go-selinux's `InitLabels`: the
//! node's container defaults give the starting file label, then only `user` and `level` of
//! the options replace their parts (`role` and `type` describe the process, not its
//! files). The same label is what kubelet hands to mount as `-o context="..."`, so both
//! the relabel and the mount option are computed here, once.

use super::context::{Context, MlsRange, ParseContextError};
use std::path::Path;

/// Mirrors Kubernetes' seLinuxOptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeLinuxOptions {
    /// `seLinuxOptions.user`: replaces the file label's user.
    pub user: Option<String>,
    /// `seLinuxOptions.role`: describes the process; not used for files.
    pub role: Option<String>,
    /// `seLinuxOptions.type`: describes the process; not used for files.
    pub type_: Option<String>,
    /// `seLinuxOptions.level`: replaces the file label's MLS/MCS level.
    pub level: Option<String>,
}

/// Why `seLinuxOptions` do not give a file label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A field is not valid SELinux syntax.
    #[error("seLinuxOptions.{field}: {source}")]
    Invalid {
        /// The field of `seLinuxOptions`, e.g. `level`.
        field: &'static str,
        /// What is wrong with it.
        source: ParseContextError,
    },
    /// No level was given.
    #[error("seLinuxOptions.level is missing: without it the container runtime picks a random MCS level, so the file label is not known in advance")]
    LevelMissing,
}

/// Where container-selinux installs the container contexts (newest first).
pub const CONTAINERS_CONTEXTS: &str = "/usr/share/containers/selinux/contexts";
/// The file label used when the node has no contexts file.
pub const FALLBACK_FILE_LABEL: &str = "system_u:object_r:container_file_t";

/// The node's container file defaults (from /usr/share/containers/selinux/contexts, else
/// /etc/selinux/<policy>/contexts/lxc_contexts, else system_u:object_r:container_file_t
/// with no level).
pub fn container_file_defaults() -> Context {
    container_file_defaults_under(Path::new("/"))
}

/// [`container_file_defaults`] with every file read below `root` (for tests and chroots).
pub fn container_file_defaults_under(root: &Path) -> Context {
    let relative = |p: &str| root.join(p.trim_start_matches('/'));
    let mut candidates = vec![relative(CONTAINERS_CONTEXTS)];
    if let Some(policy) = selinux_policy_name(&relative("/etc/selinux/config")) {
        candidates.push(relative(&format!(
            "/etc/selinux/{policy}/contexts/lxc_contexts"
        )));
    }
    candidates
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find_map(|text| file_label_in_contexts(&text))
        .unwrap_or_else(fallback_file_label)
}

fn fallback_file_label() -> Context {
    Context::parse(FALLBACK_FILE_LABEL).expect("the fallback file label is valid")
}

/// `SELINUXTYPE=` from /etc/selinux/config.
fn selinux_policy_name(config: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config).ok()?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("SELINUXTYPE="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .find(|v| !v.is_empty() && !v.contains('/'))
}

/// The `file = "..."` entry of a containers contexts / lxc_contexts file.
pub fn file_label_in_contexts(text: &str) -> Option<Context> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == "file")
        .and_then(|(_, value)| Context::parse(value.trim().trim_matches('"')).ok())
}

/// Pure: completes a file label the way kubelet does (only user and level of the options
/// reach the file label).
pub fn file_label(options: &SeLinuxOptions, defaults: &Context) -> Result<Context, LabelError> {
    let given = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let mut label = defaults.clone();
    if let Some(user) = given(&options.user) {
        label = label
            .with_user(&user)
            .map_err(|source| LabelError::Invalid {
                field: "user",
                source,
            })?;
    }
    match given(&options.level) {
        Some(level) => {
            let range = MlsRange::parse(&level).map_err(|source| LabelError::Invalid {
                field: "level",
                source,
            })?;
            label = label.with_range(Some(range));
        }
        // On an MLS/MCS node the runtime would draw a random level: unknown here.
        None if defaults.range().is_some() => return Err(LabelError::LevelMissing),
        None => {}
    }
    Ok(label)
}

/// `context="system_u:object_r:container_file_t:s0:c123,c456"`, exactly as kubelet formats
/// it (the whole label in double quotes, so the commas between categories survive the
/// splitting of mount options).
pub fn mount_option(label: &Context) -> String {
    format!("context=\"{label}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(l: &str) -> SeLinuxOptions {
        SeLinuxOptions {
            level: Some(l.to_string()),
            ..Default::default()
        }
    }

    fn ctx(s: &str) -> Context {
        Context::parse(s).unwrap()
    }

    #[test]
    fn level_completes_the_default_label() {
        let defaults = ctx("system_u:object_r:container_file_t:s0");
        let label = file_label(&level("s0:c123,c456"), &defaults).unwrap();
        assert_eq!(
            label.to_string(),
            "system_u:object_r:container_file_t:s0:c123,c456"
        );
        assert_eq!(
            mount_option(&label),
            "context=\"system_u:object_r:container_file_t:s0:c123,c456\""
        );
    }

    #[test]
    fn level_is_canonicalized() {
        let defaults = ctx("system_u:object_r:container_file_t:s0");
        let label = file_label(&level("s0:c3,c1,c2-s0:c1.c3"), &defaults).unwrap();
        assert_eq!(
            label.to_string(),
            "system_u:object_r:container_file_t:s0:c1.c3"
        );
    }

    #[test]
    fn only_user_and_level_reach_the_file_label() {
        let defaults = ctx("system_u:object_r:container_file_t:s0");
        let options = SeLinuxOptions {
            user: Some("user_u".into()),
            role: Some("user_r".into()),
            type_: Some("spc_t".into()),
            level: Some("s0:c1,c2".into()),
        };
        let label = file_label(&options, &defaults).unwrap();
        assert_eq!(
            label.to_string(),
            "user_u:object_r:container_file_t:s0:c1,c2"
        );
    }

    #[test]
    fn a_missing_level_is_an_unknown_label_on_mcs_nodes() {
        let defaults = ctx("system_u:object_r:container_file_t:s0");
        let err = file_label(&SeLinuxOptions::default(), &defaults).unwrap_err();
        assert_eq!(err, LabelError::LevelMissing);
        let empty = level("");
        assert_eq!(
            file_label(&empty, &defaults).unwrap_err(),
            LabelError::LevelMissing
        );
    }

    #[test]
    fn no_level_is_fine_without_mls() {
        let defaults = ctx(FALLBACK_FILE_LABEL);
        let label = file_label(&SeLinuxOptions::default(), &defaults).unwrap();
        assert_eq!(label, defaults);
        let label = file_label(&level("s0:c5"), &defaults).unwrap();
        assert_eq!(
            label.to_string(),
            "system_u:object_r:container_file_t:s0:c5"
        );
    }

    #[test]
    fn bad_options_name_the_field() {
        let defaults = ctx("system_u:object_r:container_file_t:s0");
        let err = file_label(&level("s0:c2000"), &defaults).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("seLinuxOptions.level: "), "{text}");
        assert!(text.contains("c2000"), "{text}");
        let bad_user = SeLinuxOptions {
            user: Some("a b".into()),
            level: Some("s0".into()),
            ..Default::default()
        };
        let text = file_label(&bad_user, &defaults).unwrap_err().to_string();
        assert!(text.starts_with("seLinuxOptions.user: "), "{text}");
    }

    #[test]
    fn contexts_files_are_read() {
        let text = "# container-selinux\nprocess = \"system_u:system_r:container_t:s0\"\n\
                    file = \"system_u:object_r:container_file_t:s0\"\n\
                    ro_file=\"system_u:object_r:container_ro_file_t:s0\"\n";
        assert_eq!(
            file_label_in_contexts(text),
            Some(ctx("system_u:object_r:container_file_t:s0"))
        );
        assert_eq!(file_label_in_contexts("#file = \"a:b:c\"\n"), None);
    }

    #[test]
    fn defaults_fall_back_in_order() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            container_file_defaults_under(root.path()),
            ctx(FALLBACK_FILE_LABEL)
        );
        let policy = root.path().join("etc/selinux/targeted/contexts");
        std::fs::create_dir_all(&policy).unwrap();
        std::fs::write(
            root.path().join("etc/selinux/config"),
            "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
        )
        .unwrap();
        std::fs::write(
            policy.join("lxc_contexts"),
            "file = \"system_u:object_r:svirt_sandbox_file_t:s0\"\n",
        )
        .unwrap();
        assert_eq!(
            container_file_defaults_under(root.path()).type_(),
            "svirt_sandbox_file_t"
        );
        let shared = root.path().join("usr/share/containers/selinux");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(
            shared.join("contexts"),
            "file = \"system_u:object_r:container_file_t:s0\"\n",
        )
        .unwrap();
        assert_eq!(
            container_file_defaults_under(root.path()).type_(),
            "container_file_t"
        );
    }
}
