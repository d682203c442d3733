//! kubelet's messages for a slow ownership pass (kubelet 1.33+), with its exact texts, so
//! operators and tools that look for them find them whether kubelet or volsec walks.
//!
//! After 30 s kubelet logs a warning and records a pod Event (type Warning, reason
//! `VolumePermissionChangeInProgress`); then every 60 s it logs how many files it has
//! processed. DIR is the volume path from the pod UID on.

use super::proto::Warning;
use std::path::Path;
use std::time::Duration;

/// When the messages come.
#[derive(Debug, Clone, Copy)]
pub struct SlowTimes {
    /// The first warning and the Event (kubelet: 30 s).
    pub after: Duration,
    /// Then "processed N files." this often (kubelet: 60 s).
    pub every: Duration,
}

impl Default for SlowTimes {
    fn default() -> Self {
        SlowTimes {
            after: Duration::from_secs(30),
            every: Duration::from_secs(60),
        }
    }
}

/// The volume path as kubelet prints it: from the pod UID on (`.../pods/UID/volumes/...`
/// gives `UID/volumes/...`), or the whole path outside kubelet's pods directory.
pub fn dir_for_messages(path: &Path) -> String {
    let s = path.to_string_lossy();
    match s.find("/pods/") {
        Some(i) => s[i + "/pods/".len()..].to_string(),
        None => s.into_owned(),
    }
}

/// The two messages at the first deadline: the log warning and the pod Event.
pub fn first(dir: &str) -> [Warning; 2] {
    [
        Warning {
            reason: "VolumeOwnershipSlow".into(),
            message: format!(
                "Setting volume ownership for {dir} and fsGroup set. If the volume has a lot of files then setting volume ownership could be slow, see https://github.com/kubernetes/kubernetes/issues/69699"
            ),
            pod_event: false,
            processed: 0,
        },
        Warning {
            reason: "VolumePermissionChangeInProgress".into(),
            message: format!(
                "Setting volume ownership for {dir} is taking longer than expected, consider using OnRootMismatch - https://kubernetes.io/docs/tasks/configure-pod-container/security-context/#configure-volume-permission-and-ownership-change-policy-for-pods"
            ),
            pod_event: true,
            processed: 0,
        },
    ]
}

/// The periodic message after that.
pub fn processed(dir: &str, files: u64) -> Warning {
    Warning {
        reason: "VolumeOwnershipProgress".into(),
        message: format!("Setting volume ownership for {dir}, processed {files} files."),
        pod_event: false,
        processed: files,
    }
}

/// The longest duration a flag takes: a day. Every duration volsec waits (a grace, an
/// interval, a lock wait) is far shorter, and a bound keeps `Instant + duration` and the
/// timers' arithmetic from overflowing (`--shutdown-grace 18446744073709551615s` panicked).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses `30s`, `500ms`, `2m` or a bare number of seconds, at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| DurationError::Number(s.to_string()))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(DurationError::Unit(s.to_string())),
    };
    // The digits-and-dots prefix parses only to a finite, non-negative number, but it may be
    // any size: checked before `Duration::from_secs_f64`, which panics past its range.
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(DurationError::TooLong(s.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Why a duration flag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No number before the unit.
    #[error("invalid duration {0:?}: expected e.g. 30s, 500ms or 2m")]
    Number(String),
    /// A unit other than `ms`, `s` or `m`.
    #[error("invalid duration {0:?}: the unit must be ms, s or m")]
    Unit(String),
    /// Longer than [`MAX_DURATION`].
    #[error("invalid duration {0:?}: at most 1440m (a day)")]
    TooLong(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_is_from_the_pod_uid_on() {
        let p = Path::new("/var/lib/kubelet/pods/1234/volumes/kubernetes.io~csi/pv1/mount");
        assert_eq!(
            dir_for_messages(p),
            "1234/volumes/kubernetes.io~csi/pv1/mount"
        );
        assert_eq!(dir_for_messages(Path::new("/data/v")), "/data/v");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("5h").is_err());
        assert_eq!(parse_duration("1440m").unwrap(), MAX_DURATION);
        for huge in [
            "18446744073709551615s",
            "1441m",
            "1e400",
            "99999999999999999999999ms",
        ] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
    }
}
