//! `fsGroupChangePolicy`: whether a volume that looks right at its root is walked anyway.

use serde::Serialize;
use std::str::FromStr;

/// The pod's `securityContext.fsGroupChangePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum ChangePolicy {
    /// Walk the whole volume on every mount (Kubernetes' default, also when unset).
    #[default]
    Always,
    /// Skip the walk when the root already has fsGroup, setgid and the permission bits.
    OnRootMismatch,
}

impl ChangePolicy {
    /// Every policy, in the API's order.
    pub const ALL: [ChangePolicy; 2] = [ChangePolicy::Always, ChangePolicy::OnRootMismatch];

    /// The API's spelling, as in a pod manifest.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChangePolicy::Always => "Always",
            ChangePolicy::OnRootMismatch => "OnRootMismatch",
        }
    }
}

impl std::fmt::Display for ChangePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `fsGroupChangePolicy` that is neither `Always` nor `OnRootMismatch`.
#[derive(Debug, thiserror::Error)]
#[error("unknown fsGroupChangePolicy {0:?}: expected Always or OnRootMismatch")]
pub struct ParsePolicyError(pub String);

impl FromStr for ChangePolicy {
    type Err = ParsePolicyError;

    /// The API's spelling, exactly as in a pod manifest.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Always" => Ok(ChangePolicy::Always),
            "OnRootMismatch" => Ok(ChangePolicy::OnRootMismatch),
            other => Err(ParsePolicyError(other.to_string())),
        }
    }
}
