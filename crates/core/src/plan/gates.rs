//! The kubelet feature gates that change volume decisions, with their defaults per Kubernetes
//! release.
//!
//! The same pod gets a different answer on a 1.27 and on a 1.36 node: mount with
//! `-o context=` needs SELinuxMountReadWriteOncePod (on by default from 1.28), opting out
//! with `seLinuxChangePolicy: Recursive` needs SELinuxChangePolicy (1.33), and mounting
//! non-ReadWriteOncePod volumes with the label needs SELinuxMount (off by default through
//! 1.36). So a plan is always made for a stated release, with kubelet's defaults for it,
//! and overrides exactly as `--feature-gates` spells them.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The oldest release volsec knows the volume rules of.
pub const OLDEST_MINOR: u32 = 25;
/// The newest release volsec knows; the default.
pub const NEWEST_MINOR: u32 = 36;

/// A Kubernetes release, `1.MINOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct KubeVersion {
    /// The minor release: 36 for 1.36.
    pub minor: u32,
}

impl KubeVersion {
    /// The newest release volsec knows: the default for `--kubernetes-version`.
    pub const NEWEST: KubeVersion = KubeVersion {
        minor: NEWEST_MINOR,
    };

    /// Accepts `1.36`, `v1.36` and `1.36.2` (the patch release changes no default).
    pub fn parse(s: &str) -> Result<KubeVersion, GateError> {
        let bad = || GateError::Version(s.to_string());
        let t = s.trim().trim_start_matches('v');
        let mut parts = t.split('.');
        let (Some("1"), Some(minor)) = (parts.next(), parts.next()) else {
            return Err(bad());
        };
        let minor: u32 = minor.parse().map_err(|_| bad())?;
        if parts.next().is_some_and(|p| p.parse::<u32>().is_err()) || parts.next().is_some() {
            return Err(bad());
        }
        if !(OLDEST_MINOR..=NEWEST_MINOR).contains(&minor) {
            return Err(bad());
        }
        Ok(KubeVersion { minor })
    }

    /// Whether this release is `1.minor` or newer.
    pub fn at_least(&self, minor: u32) -> bool {
        self.minor >= minor
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.minor)
    }
}

impl From<KubeVersion> for String {
    fn from(v: KubeVersion) -> String {
        v.to_string()
    }
}

/// The gates volsec's decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Gate {
    /// Mount ReadWriteOncePod volumes with `-o context=` (and collect the pod's labels).
    SELinuxMountReadWriteOncePod,
    /// Honour `spec.securityContext.seLinuxChangePolicy`.
    SELinuxChangePolicy,
    /// Mount every eligible volume with `-o context=`, whatever its access modes.
    SELinuxMount,
    /// Honour `supplementalGroupsPolicy: Strict`.
    SupplementalGroupsPolicy,
}

impl Gate {
    /// Every gate, in the order plans list them.
    pub const ALL: [Gate; 4] = [
        Gate::SELinuxMountReadWriteOncePod,
        Gate::SELinuxChangePolicy,
        Gate::SELinuxMount,
        Gate::SupplementalGroupsPolicy,
    ];

    /// The gate's name as `--feature-gates` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Gate::SELinuxMountReadWriteOncePod => "SELinuxMountReadWriteOncePod",
            Gate::SELinuxChangePolicy => "SELinuxChangePolicy",
            Gate::SELinuxMount => "SELinuxMount",
            Gate::SupplementalGroupsPolicy => "SupplementalGroupsPolicy",
        }
    }

    /// kubelet's table: from which release each stage holds, its default, and whether the
    /// value is locked to it (GA).
    fn stages(&self) -> &'static [Stage] {
        match self {
            Gate::SELinuxMountReadWriteOncePod => SELINUX_MOUNT_RWOP,
            Gate::SELinuxChangePolicy => SELINUX_CHANGE_POLICY,
            Gate::SELinuxMount => SELINUX_MOUNT,
            Gate::SupplementalGroupsPolicy => SUPPLEMENTAL_GROUPS_POLICY,
        }
    }

    /// The stage in force at `version`; `None` before the gate existed.
    fn stage_at(&self, version: KubeVersion) -> Option<&'static Stage> {
        self.stages().iter().rev().find(|s| version.minor >= s.from)
    }

    fn by_name(name: &str) -> Option<Gate> {
        Gate::ALL.into_iter().find(|g| g.name() == name)
    }
}

const SELINUX_MOUNT_RWOP: &[Stage] = &[
    Stage::new(25, false, "alpha", false),
    Stage::new(27, false, "beta", false),
    Stage::new(28, true, "beta", false),
    Stage::new(36, true, "GA", true),
];
const SELINUX_CHANGE_POLICY: &[Stage] = &[
    Stage::new(32, false, "alpha", false),
    Stage::new(33, true, "beta", false),
    Stage::new(36, true, "GA", true),
];
const SELINUX_MOUNT: &[Stage] = &[
    Stage::new(30, false, "alpha", false),
    Stage::new(33, false, "beta", false),
];
const SUPPLEMENTAL_GROUPS_POLICY: &[Stage] = &[
    Stage::new(31, false, "alpha", false),
    Stage::new(33, true, "beta", false),
    Stage::new(35, true, "GA", true),
];

#[derive(Debug)]
struct Stage {
    from: u32,
    default: bool,
    name: &'static str,
    locked: bool,
}

impl Stage {
    const fn new(from: u32, default: bool, name: &'static str, locked: bool) -> Stage {
        Stage {
            from,
            default,
            name,
            locked,
        }
    }
}

/// Why `--kubernetes-version` or `--feature-gates` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// `--kubernetes-version` does not name a release from [`OLDEST_MINOR`] to [`NEWEST_MINOR`].
    #[error("--kubernetes-version: {0:?} is not a release volsec knows; expected 1.{OLDEST_MINOR} to 1.{NEWEST_MINOR}, e.g. 1.{NEWEST_MINOR}")]
    Version(String),
    /// An item of `--feature-gates` is not `NAME=true` or `NAME=false`.
    #[error("--feature-gates: {0:?} is not NAME=true or NAME=false")]
    Syntax(String),
    /// A gate volsec does not know (and so cannot honour).
    #[error("--feature-gates: unknown feature gate {name:?}; volsec knows {known}")]
    Unknown {
        /// The name as given.
        name: String,
        /// The gates volsec knows, comma-separated.
        known: String,
    },
    /// The gate was not in kubelet yet at the given release.
    #[error(
        "--feature-gates: {name} does not exist in Kubernetes {version}; it appeared in 1.{from}"
    )]
    NotYet {
        /// The gate.
        name: &'static str,
        /// The release asked for.
        version: KubeVersion,
        /// The minor release the gate appeared in.
        from: u32,
    },
    /// The gate is GA at the given release, locked to its default.
    #[error("--feature-gates: {name} is GA and locked to {default} in Kubernetes {version}; it cannot be set to {asked}")]
    Locked {
        /// The gate.
        name: &'static str,
        /// The release asked for.
        version: KubeVersion,
        /// The value the gate is locked to.
        default: bool,
        /// The value asked for.
        asked: bool,
    },
}

/// `--feature-gates` as given, `A=true,B=false`: names and values in the order given, not
/// yet checked against a release. The one parser of that syntax, for `volsec plan`, the
/// agent's client (which sends the values as a map) and the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateOverrides(Vec<(String, bool)>);

impl GateOverrides {
    /// Overrides that arrive as a map (the agent's `NodeFacts.feature_gates`), sorted by
    /// name, so a refusal names the same gate whatever order the map iterates in.
    pub fn from_map<S: Into<String>>(map: impl IntoIterator<Item = (S, bool)>) -> GateOverrides {
        let mut items: Vec<(String, bool)> = map.into_iter().map(|(n, v)| (n.into(), v)).collect();
        items.sort();
        GateOverrides(items)
    }

    /// The overrides in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, bool)> + '_ {
        self.0.iter().map(|(name, value)| (name.as_str(), *value))
    }
}

impl std::str::FromStr for GateOverrides {
    type Err = GateError;

    /// Empty items are ignored, spaces around names and values too.
    fn from_str(spec: &str) -> Result<GateOverrides, GateError> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                let syntax = || GateError::Syntax(item.to_string());
                let (name, value) = item.split_once('=').ok_or_else(syntax)?;
                let value = value.trim().parse().map_err(|_| syntax())?;
                Ok((name.trim().to_string(), value))
            })
            .collect::<Result<_, _>>()
            .map(GateOverrides)
    }
}

/// The gates in force on a node: kubelet's defaults for a release plus overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureGates {
    /// The node's Kubernetes release.
    pub version: KubeVersion,
    /// Every gate volsec uses, by name, with its value (defaults included).
    pub values: BTreeMap<&'static str, bool>,
}

impl FeatureGates {
    /// kubelet's defaults for `version`; a gate that did not exist yet is off.
    pub fn defaults(version: KubeVersion) -> FeatureGates {
        let values = Gate::ALL
            .into_iter()
            .map(|g| (g.name(), g.stage_at(version).is_some_and(|s| s.default)))
            .collect();
        FeatureGates { version, values }
    }

    /// Defaults for `version` with `--feature-gates` applied (`A=true,B=false`).
    pub fn with_overrides(version: KubeVersion, spec: &str) -> Result<FeatureGates, GateError> {
        FeatureGates::with(version, &spec.parse()?)
    }

    /// Defaults for `version` with `overrides` applied, in their order.
    pub fn with(
        version: KubeVersion,
        overrides: &GateOverrides,
    ) -> Result<FeatureGates, GateError> {
        let mut gates = FeatureGates::defaults(version);
        for (name, value) in overrides.iter() {
            gates.set(name, value)?;
        }
        Ok(gates)
    }

    fn set(&mut self, name: &str, value: bool) -> Result<(), GateError> {
        let gate = Gate::by_name(name).ok_or_else(|| GateError::Unknown {
            name: name.to_string(),
            known: Gate::ALL.map(|g| g.name()).join(", "),
        })?;
        let Some(stage) = gate.stage_at(self.version) else {
            return Err(GateError::NotYet {
                name: gate.name(),
                version: self.version,
                from: gate.stages()[0].from,
            });
        };
        if stage.locked && value != stage.default {
            return Err(GateError::Locked {
                name: gate.name(),
                version: self.version,
                default: stage.default,
                asked: value,
            });
        }
        self.values.insert(gate.name(), value);
        Ok(())
    }

    /// Whether `gate` is on.
    pub fn enabled(&self, gate: Gate) -> bool {
        self.values.get(gate.name()).copied().unwrap_or(false)
    }

    /// `SELinuxMount (beta, default off)`, for reasons.
    pub fn describe(&self, gate: Gate) -> String {
        let state = if self.enabled(gate) { "on" } else { "off" };
        match gate.stage_at(self.version) {
            Some(s) if s.default == self.enabled(gate) => format!(
                "{} is {state} ({} in {}, the default)",
                gate.name(),
                s.name,
                self.version
            ),
            Some(s) => format!(
                "{} is {state} ({} in {}, set by --feature-gates)",
                gate.name(),
                s.name,
                self.version
            ),
            None => format!("{} does not exist in {}", gate.name(), self.version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(minor: u32) -> KubeVersion {
        KubeVersion { minor }
    }

    #[test]
    fn defaults_follow_the_release() {
        let g = FeatureGates::defaults(v(36));
        assert!(g.enabled(Gate::SELinuxMountReadWriteOncePod));
        assert!(g.enabled(Gate::SELinuxChangePolicy));
        assert!(!g.enabled(Gate::SELinuxMount));
        let g = FeatureGates::defaults(v(27));
        assert!(!g.enabled(Gate::SELinuxMountReadWriteOncePod));
        assert!(!g.enabled(Gate::SELinuxChangePolicy));
        let g = FeatureGates::defaults(v(32));
        assert!(g.enabled(Gate::SELinuxMountReadWriteOncePod));
        assert!(!g.enabled(Gate::SELinuxChangePolicy));
        assert!(!g.enabled(Gate::SupplementalGroupsPolicy));
    }

    #[test]
    fn overrides_and_their_errors() {
        let g = FeatureGates::with_overrides(v(36), "SELinuxMount=true").unwrap();
        assert!(g.enabled(Gate::SELinuxMount));
        let e = FeatureGates::with_overrides(v(36), "SELinuxMount=yes").unwrap_err();
        assert!(matches!(e, GateError::Syntax(_)));
        let e = FeatureGates::with_overrides(v(36), "SELinuxMagic=true").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown feature gate \"SELinuxMagic\""),
            "{e}"
        );
        let e = FeatureGates::with_overrides(v(29), "SELinuxMount=true").unwrap_err();
        assert!(e.to_string().contains("appeared in 1.30"), "{e}");
        let e = FeatureGates::with_overrides(v(36), "SELinuxChangePolicy=false").unwrap_err();
        assert!(matches!(e, GateError::Locked { .. }), "{e}");
    }

    #[test]
    fn versions() {
        assert_eq!(KubeVersion::parse("v1.33.2").unwrap(), v(33));
        assert_eq!(KubeVersion::parse("1.36").unwrap(), v(36));
        assert!(KubeVersion::parse("1.24").is_err());
        assert!(KubeVersion::parse("2.1").is_err());
        assert!(KubeVersion::parse("1.x").is_err());
    }
}
