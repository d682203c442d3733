//! SELinux security contexts: `user:role:type[:range]`.
//!
//! A label read back from `security.selinux` is compared with the wanted one to decide
//! whether to write. The kernel hands labels back in one canonical form (categories
//! ascending, runs of three or more as `cA.cB`, a range whose two levels are equal written
//! once), while people and tools write the same label many ways (`s0:c3,c1,c2`,
//! `s0-s0:c1.c3`). Comparing strings would rewrite labels that are already right, bumping
//! ctime on every file; comparing parsed contexts rendered the kernel's way does not.
//!
//! Names follow the MCS/MLS convention of the targeted and mls policies: sensitivities
//! `s0`..`s15`, categories `c0`..`c1023`. With a policy loaded the kernel has the last word
//! (see [`super::resolve_label`]); without one, this module is the check.

use std::collections::BTreeSet;
use std::fmt;

/// The highest sensitivity the reference policies define (`s15`).
pub const SENSITIVITY_MAX: u32 = 15;
/// The highest category the reference policies define (`c1023`).
pub const CATEGORY_MAX: u32 = 1023;

/// A parsed security context, rendered in the kernel's canonical form by `Display`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Context {
    user: String,
    role: String,
    type_: String,
    range: Option<MlsRange>,
}

/// An MLS/MCS range `low[-high]`; `high` dominates `low`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MlsRange {
    low: Level,
    high: Level,
}

/// One MLS level: a sensitivity and a set of categories (`s0:c1,c2`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Level {
    sensitivity: u32,
    categories: BTreeSet<u32>,
}

/// Why a context (or a level or range) is malformed; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SELinux {what} {input:?}: {reason}")]
pub struct ParseContextError {
    /// What was being parsed: "context", "range" or "level".
    pub what: &'static str,
    /// The whole text given.
    pub input: String,
    /// What is wrong with which part.
    pub reason: String,
}

impl ParseContextError {
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> ParseContextError {
        ParseContextError {
            what,
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}

impl Context {
    /// Parses `user:role:type[:range]`, checking every part.
    pub fn parse(s: &str) -> Result<Context, ParseContextError> {
        let mut parts = s.splitn(4, ':');
        let mut field = |what: &str| -> Result<String, ParseContextError> {
            let part = parts.next().unwrap_or("");
            check_identifier(what, part)
                .map_err(|reason| ParseContextError::new("context", s, reason))?;
            Ok(part.to_string())
        };
        let user = field("user")?;
        let role = field("role")?;
        let type_ = field("type")?;
        let range = parts
            .next()
            .map(|r| {
                MlsRange::parse_part(r)
                    .map_err(|reason| ParseContextError::new("context", s, reason))
            })
            .transpose()?;
        Ok(Context {
            user,
            role,
            type_,
            range,
        })
    }

    /// Builds a context from checked parts.
    pub fn new(
        user: &str,
        role: &str,
        type_: &str,
        range: Option<MlsRange>,
    ) -> Result<Context, ParseContextError> {
        let text = format!("{user}:{role}:{type_}");
        for (what, part) in [("user", user), ("role", role), ("type", type_)] {
            check_identifier(what, part)
                .map_err(|reason| ParseContextError::new("context", &text, reason))?;
        }
        Ok(Context {
            user: user.to_string(),
            role: role.to_string(),
            type_: type_.to_string(),
            range,
        })
    }

    /// The SELinux user, e.g. `system_u`.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The role, e.g. `object_r` for files.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The type, e.g. `container_file_t`: what the policy's rules are about.
    pub fn type_(&self) -> &str {
        &self.type_
    }

    /// The MLS/MCS range, absent on policies without MLS.
    pub fn range(&self) -> Option<&MlsRange> {
        self.range.as_ref()
    }

    /// The same context with another user.
    pub fn with_user(mut self, user: &str) -> Result<Context, ParseContextError> {
        check_identifier("user", user)
            .map_err(|reason| ParseContextError::new("user", user, reason))?;
        self.user = user.to_string();
        Ok(self)
    }

    /// The same context with another range.
    pub fn with_range(mut self, range: Option<MlsRange>) -> Context {
        self.range = range;
        self
    }
}

impl MlsRange {
    /// Parses `level[-level]`, e.g. `s0`, `s0:c1,c2`, `s0-s0:c0.c1023`.
    pub fn parse(s: &str) -> Result<MlsRange, ParseContextError> {
        MlsRange::parse_part(s).map_err(|reason| ParseContextError::new("range", s, reason))
    }

    fn parse_part(s: &str) -> Result<MlsRange, String> {
        let (low, high) = match s.split_once('-') {
            Some((low, high)) => (low, Some(high)),
            None => (s, None),
        };
        let low = Level::parse_part(low, "low level")?;
        let Some(high) = high else {
            return Ok(MlsRange {
                high: low.clone(),
                low,
            });
        };
        let high = Level::parse_part(high, "high level")?;
        if !high.dominates(&low) {
            return Err(format!(
                "range {s:?}: high level {high} does not dominate low level {low}"
            ));
        }
        Ok(MlsRange { low, high })
    }

    /// A range with both ends equal to `level`.
    pub fn single(level: Level) -> MlsRange {
        MlsRange {
            high: level.clone(),
            low: level,
        }
    }

    /// The lower level of the range (the only one, for a single level).
    pub fn low(&self) -> &Level {
        &self.low
    }

    /// The upper level (clearance) of the range.
    pub fn high(&self) -> &Level {
        &self.high
    }
}

impl Level {
    /// Parses `sN[:cats]`.
    pub fn parse(s: &str) -> Result<Level, ParseContextError> {
        Level::parse_part(s, "level").map_err(|reason| ParseContextError::new("level", s, reason))
    }

    fn parse_part(s: &str, what: &str) -> Result<Level, String> {
        let (sens, cats) = match s.split_once(':') {
            Some((sens, cats)) => (sens, Some(cats)),
            None => (s, None),
        };
        let sensitivity = number(sens, 's', SENSITIVITY_MAX)
            .map_err(|why| format!("{what} {s:?}: sensitivity {sens:?} {why}"))?;
        let mut categories = BTreeSet::new();
        if let Some(cats) = cats {
            for item in cats.split(',') {
                add_categories(&mut categories, item)
                    .map_err(|why| format!("{what} {s:?}: category {item:?} {why}"))?;
            }
        }
        Ok(Level {
            sensitivity,
            categories,
        })
    }

    /// A level from a sensitivity and categories, each checked against the limits.
    pub fn new(
        sensitivity: u32,
        categories: impl IntoIterator<Item = u32>,
    ) -> Result<Level, ParseContextError> {
        let level = Level {
            sensitivity,
            categories: categories.into_iter().collect(),
        };
        let text = level.to_string();
        if sensitivity > SENSITIVITY_MAX {
            return Err(ParseContextError::new(
                "level",
                &text,
                format!("sensitivity s{sensitivity} is above s{SENSITIVITY_MAX}"),
            ));
        }
        if let Some(c) = level.categories.iter().find(|&&c| c > CATEGORY_MAX) {
            return Err(ParseContextError::new(
                "level",
                &text,
                format!("category c{c} is above c{CATEGORY_MAX}"),
            ));
        }
        Ok(level)
    }

    /// The sensitivity `N` of `sN`.
    pub fn sensitivity(&self) -> u32 {
        self.sensitivity
    }

    /// The categories, ascending.
    pub fn categories(&self) -> impl Iterator<Item = u32> + '_ {
        self.categories.iter().copied()
    }

    /// The kernel's dominance: at least as sensitive and a superset of the categories.
    pub fn dominates(&self, other: &Level) -> bool {
        self.sensitivity >= other.sensitivity && self.categories.is_superset(&other.categories)
    }
}

/// `cN` or `cN.cM` with N < M, as the kernel accepts them.
fn add_categories(set: &mut BTreeSet<u32>, item: &str) -> Result<(), String> {
    match item.split_once('.') {
        None => {
            set.insert(number(item, 'c', CATEGORY_MAX)?);
        }
        Some((first, last)) => {
            let first = number(first, 'c', CATEGORY_MAX)?;
            let last = number(last, 'c', CATEGORY_MAX)?;
            if first >= last {
                return Err(format!("is not a range: c{first} must be below c{last}"));
            }
            set.extend(first..=last);
        }
    }
    Ok(())
}

/// `<prefix>N` with N a decimal number without sign or leading zeros, at most `max`.
fn number(s: &str, prefix: char, max: u32) -> Result<u32, String> {
    let digits = s
        .strip_prefix(prefix)
        .ok_or_else(|| format!("must start with '{prefix}'"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("must be '{prefix}' followed by a number"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err("has a leading zero (the kernel knows no such name)".to_string());
    }
    match digits.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("is above {prefix}{max}")),
    }
}

/// Users, roles and types are policy identifiers: letters, digits, `_`, `-` and `.`.
fn check_identifier(what: &str, part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err(format!(
            "the {what} is missing (expected user:role:type[:range])"
        ));
    }
    match part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(c) => Err(format!("the {what} {part:?} contains {c:?}")),
        None => Ok(()),
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.user, self.role, self.type_)?;
        match &self.range {
            Some(range) => write!(f, ":{range}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for MlsRange {
    /// The kernel writes the high level only when it differs from the low one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.low)?;
        if self.high != self.low {
            write!(f, "-{}", self.high)?;
        }
        Ok(())
    }
}

impl fmt::Display for Level {
    /// Categories ascending; a run of three or more as `cA.cB`, a run of two as `cA,cB`
    /// (the kernel's `mls_sid_to_context`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.sensitivity)?;
        let mut sep = ':';
        let mut cats = self.categories.iter().copied().peekable();
        while let Some(head) = cats.next() {
            let mut last = head;
            while cats.peek() == Some(&(last + 1)) {
                last = cats.next().unwrap_or(last);
            }
            match last - head {
                0 => write!(f, "{sep}c{head}")?,
                1 => write!(f, "{sep}c{head},c{last}")?,
                _ => write!(f, "{sep}c{head}.c{last}")?,
            }
            sep = ',';
        }
        Ok(())
    }
}

impl std::str::FromStr for Context {
    type Err = ParseContextError;
    fn from_str(s: &str) -> Result<Context, ParseContextError> {
        Context::parse(s)
    }
}

#[cfg(test)]
mod tests;
