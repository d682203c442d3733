//! The caller's deadline, as gRPC sends it: the `grpc-timeout` header. The agent abandons a
//! Plan whose caller stopped waiting; the CSI proxy answers `ABORTED` with progress shortly
//! before kubelet's deadline and gives each driver call what is left of it.

use std::time::Duration;
use tonic::metadata::MetadataMap;

/// The caller's deadline from its `grpc-timeout` header (gRPC over HTTP/2: up to 8 digits
/// and a unit, H M S m u n).
pub fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        let mut m = MetadataMap::new();
        assert_eq!(grpc_timeout(&m), None);
        m.insert("grpc-timeout", "119999m".parse().unwrap());
        assert_eq!(grpc_timeout(&m), Some(Duration::from_millis(119_999)));
        m.insert("grpc-timeout", "2M".parse().unwrap());
        assert_eq!(grpc_timeout(&m), Some(Duration::from_secs(120)));
        m.insert("grpc-timeout", "5x".parse().unwrap());
        assert_eq!(grpc_timeout(&m), None);
    }
}
