//! The node's libselinux, behind the `libselinux` cargo feature.
//!
//! Two things only libselinux can do: translate MCS names (`mcstransd`'s `SystemLow`,
//! `Company_Confidential`, ...) into the raw levels the kernel stores, and ask the loaded
//! policy whether a context is valid through the library every SELinux tool uses. Without
//! the feature volsec reads raw contexts only and validates them through selinuxfs itself
//! ([`super::resolve_label`]), which is the same kernel check; with it, people can give
//! labels the way `ls -Z` shows them on their node.

use super::context::{Context, ParseContextError};
use selinux::SecurityContext;
use std::ffi::CString;

/// Why libselinux could not translate or accept a context.
#[derive(Debug, thiserror::Error)]
pub enum LibSelinuxError {
    #[error("SELinux context {0:?} contains a NUL byte")]
    Nul(String),
    #[error("libselinux cannot translate {text:?} to a raw context: {source}")]
    Translate {
        text: String,
        source: selinux::errors::Error,
    },
    #[error("libselinux returned {0:?}, which volsec cannot read: {1}")]
    Unreadable(String, ParseContextError),
    #[error("SELinux context {0:?} is not valid in the loaded policy (security_check_context)")]
    InvalidInPolicy(String),
}

/// Translates a context as people write it (MCS names allowed) into the raw form the
/// kernel stores. Without `mcstransd` running, libselinux returns the text unchanged.
pub fn to_raw(text: &str) -> Result<String, LibSelinuxError> {
    let c = CString::new(text).map_err(|_| LibSelinuxError::Nul(text.to_string()))?;
    let translated = SecurityContext::from_c_str(&c, false);
    let raw = translated
        .to_raw_format()
        .map_err(|source| LibSelinuxError::Translate {
            text: text.to_string(),
            source,
        })?;
    let bytes = raw.as_bytes();
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// Translates a range (e.g. `SystemLow-SystemHigh`) by translating it inside `within`.
pub fn range_to_raw(range: &str, within: &Context) -> Result<String, LibSelinuxError> {
    let whole = format!(
        "{}:{}:{}:{range}",
        within.user(),
        within.role(),
        within.type_()
    );
    let raw = to_raw(&whole)?;
    let parsed = Context::parse(&raw).map_err(|e| LibSelinuxError::Unreadable(raw.clone(), e))?;
    Ok(parsed
        .range()
        .map(ToString::to_string)
        .unwrap_or_else(|| range.to_string()))
}

/// Asks the loaded policy whether `ctx` is valid. `Ok(false)` means SELinux is disabled
/// and nothing could be checked.
pub fn check(ctx: &Context) -> Result<bool, LibSelinuxError> {
    let text = ctx.to_string();
    let c = CString::new(text.clone()).map_err(|_| LibSelinuxError::Nul(text.clone()))?;
    let checked = SecurityContext::from_c_str(&c, true).check();
    match checked {
        None => Ok(false),
        Some(true) => Ok(true),
        Some(false) => Err(LibSelinuxError::InvalidInPolicy(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_contexts_translate_to_themselves() {
        let text = "system_u:object_r:container_file_t:s0:c1,c2";
        if super::super::selinux_enabled() {
            // mcstransd may rename levels, but a raw context stays parseable.
            assert!(Context::parse(&to_raw(text).unwrap()).is_ok());
        } else {
            assert_eq!(to_raw(text).unwrap(), text);
        }
        assert!(matches!(to_raw("a\0b"), Err(LibSelinuxError::Nul(_))));
    }

    #[test]
    fn ranges_translate_inside_a_context() {
        let within = Context::parse("system_u:object_r:container_file_t:s0").unwrap();
        let raw = range_to_raw("s0:c2,c1", &within).unwrap();
        if super::super::selinux_enabled() {
            assert!(super::super::MlsRange::parse(&raw).is_ok(), "{raw}");
        } else {
            assert_eq!(raw, "s0:c1,c2");
        }
    }

    #[test]
    fn check_reports_a_disabled_node_or_refuses_unknown_names() {
        let ctx = Context::parse("nosuchuser_u:object_r:nosuch_t:s0").unwrap();
        if super::super::selinux_enabled() {
            assert!(matches!(
                check(&ctx),
                Err(LibSelinuxError::InvalidInPolicy(_))
            ));
        } else {
            assert!(!check(&ctx).unwrap());
        }
    }
}
