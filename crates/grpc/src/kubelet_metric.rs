//! kubelet's `storage_operation_duration_seconds`, exactly as kubelet exports it, for the
//! agent and the CSI proxy alike.
//!
//! Dashboards and alerts written for kubelet select on this metric's name, its four labels
//! and their values, and its buckets; a volume that volsec prepares instead of kubelet keeps
//! them working only if all of these are kubelet's. Each value below is read from kubelet's
//! source (docs/agent.md, "Metrics and health", cites the files and names):
//! - `pkg/volume/util/metrics.go`, `storageOperationMetric`: the name, the help text, the
//!   buckets, the label names `volume_plugin`, `operation_name`, `status`, `migrated`;
//!   the consts `statusSuccess` / `statusFailUnknown`; `OperationCompleteHook` sets
//!   `migrated` with `strconv.FormatBool` (`"false"` unless a migrated in-tree volume);
//!   `FSGroupCompleteHook` names the fsGroup operation, `GetFullQualifiedPluginNameForVolume`
//!   the plugin (`<plugin>:<driver>` for CSI).
//! - kubernetes PR 105885 (CHANGELOG-1.23): the fsGroup operation is
//!   `volume_apply_access_control` since 1.23 (`volume_fsgroup_recursive_apply` before).
//! - `pkg/volume/csi/csi_plugin.go`, `CSIPluginName`: `kubernetes.io/csi`.
//! - `pkg/volume/util/operationexecutor/operation_generator.go`, `unknownVolumePlugin`: the
//!   plugin label of an operation whose plugin kubelet could not find.
//! - `pkg/volume/volume_linux.go`, `SetVolumeOwnership`: a pass that OnRootMismatch skips
//!   returns before the hook, so a skip is not observed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// The metric's name (`storageOperationMetric`).
pub const NAME: &str = "storage_operation_duration_seconds";

/// Its HELP text as kubelet's scrape shows it: component-base prefixes the stability level
/// of an ALPHA metric to the help kubelet registers ("Storage operation duration").
pub const HELP: &str = "[ALPHA] Storage operation duration";

/// kubelet's operation name for applying fsGroup (`FSGroupCompleteHook`, since 1.23); in
/// volsec's fused pass, the label written in the same walk is part of it.
pub const APPLY_ACCESS_CONTROL: &str = "volume_apply_access_control";

/// kubelet's name for the CSI plugin (`CSIPluginName`).
pub const CSI_PLUGIN: &str = "kubernetes.io/csi";

/// The plugin label when the plugin is not known (`unknownVolumePlugin`).
pub const UNKNOWN_PLUGIN: &str = "UnknownVolumePlugin";

/// kubelet's buckets, in seconds.
pub const BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 25.0, 50.0, 120.0, 300.0, 600.0,
];

/// The `Content-Type` of the exposition: Prometheus's text format 0.0.4, the one kubelet
/// serves.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `volume_plugin` value of a CSI driver's volume: `kubernetes.io/csi:<driver>`.
pub fn csi_plugin(driver: &str) -> String {
    format!("{CSI_PLUGIN}:{driver}")
}

/// How an operation ended, as kubelet's `status` label says it: kubelet tells no causes
/// apart, so every failure is `fail-unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    FailUnknown,
}

impl Status {
    /// `statusSuccess` / `statusFailUnknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::FailUnknown => "fail-unknown",
        }
    }
}

/// One series, keyed as kubelet's client library orders them (by the label values, in the
/// sorted label names' order): `(operation_name, status, volume_plugin)`; `migrated` is
/// always `false`.
type Series = (&'static str, &'static str, String);

#[derive(Default)]
struct Observations {
    /// Per bucket, the observations that fell in it (not yet cumulative).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The histogram, kept here rather than in a `prometheus_client` registry: that crate writes
/// OpenMetrics (`le="1.0"`, a `.` appended to every HELP), and a dashboard that sums
/// kubelet's and volsec's buckets by `le` needs kubelet's spelling (`le="1"`).
#[derive(Default)]
pub struct StorageOperations {
    series: Mutex<BTreeMap<Series, Observations>>,
}

impl StorageOperations {
    /// One finished operation. `migrated` is always `false`: volsec prepares the volume a
    /// CSI driver or a plugin mounted, never an in-tree volume migrated to CSI.
    pub fn observe(
        &self,
        volume_plugin: &str,
        operation_name: &'static str,
        status: Status,
        seconds: f64,
    ) {
        let mut series = self.series.lock().expect("lock");
        let o = series
            .entry((operation_name, status.as_str(), volume_plugin.to_string()))
            .or_default();
        if let Some(i) = BUCKETS.iter().position(|&upper| seconds <= upper) {
            o.buckets[i] += 1;
        }
        o.count += 1;
        o.sum += seconds;
    }

    /// The family in Prometheus's text format as kubelet's client library writes it: HELP
    /// and TYPE even with no series yet, label names sorted, `le` last, numbers as Go's
    /// `strconv.FormatFloat(v, 'g', -1, 64)`.
    pub fn encode(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {NAME} {HELP}");
        let _ = writeln!(out, "# TYPE {NAME} histogram");
        let series = self.series.lock().expect("lock");
        for ((operation, status, plugin), o) in series.iter() {
            let labels = format!(
                "migrated=\"false\",operation_name=\"{operation}\",status=\"{status}\",volume_plugin=\"{}\"",
                escape(plugin)
            );
            let mut cumulative = 0;
            for (upper, n) in BUCKETS.iter().zip(o.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{NAME}_bucket{{{labels},le=\"{}\"}} {cumulative}",
                    go_float(*upper)
                );
            }
            let _ = writeln!(out, "{NAME}_bucket{{{labels},le=\"+Inf\"}} {}", o.count);
            let _ = writeln!(out, "{NAME}_sum{{{labels}}} {}", go_float(o.sum));
            let _ = writeln!(out, "{NAME}_count{{{labels}}} {}", o.count);
        }
    }
}

/// Appends volsec's own metrics (a `prometheus_client` registry) to the exposition. That
/// crate writes OpenMetrics; its families without the closing `# EOF` (which
/// `encode_registry` leaves out) read as Prometheus's text format too.
pub fn append_registry(out: &mut String, registry: &prometheus_client::registry::Registry) {
    let mut own = String::new();
    prometheus_client::encoding::text::encode_registry(&mut own, registry)
        .expect("writing to a String cannot fail");
    out.push_str(&own);
}

/// A label value as the text format escapes it: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// `v` as Go's `strconv.FormatFloat(v, 'g', -1, 64)`: the shortest digits that read back
/// as `v`, in exponent form (`1e-05`, `1.5e+06`) below 1e-4 and from 1e6 on.
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` gives the same shortest digits: "1.5e6", "1e-5".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("an integer exponent");
    if (-4..6).contains(&exp) {
        return format!("{v}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_writes_them() {
        for (v, go) in [
            (0.1, "0.1"),
            (1.0, "1"),
            (2.5, "2.5"),
            (600.0, "600"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.30000000000000004, "0.30000000000000004"),
        ] {
            assert_eq!(go_float(v), go, "{v}");
        }
    }

    #[test]
    fn buckets_are_cumulative_and_labels_sorted() {
        let m = StorageOperations::default();
        m.observe(
            "kubernetes.io/csi:d",
            APPLY_ACCESS_CONTROL,
            Status::Success,
            0.3,
        );
        m.observe(
            "kubernetes.io/csi:d",
            APPLY_ACCESS_CONTROL,
            Status::Success,
            700.0,
        );
        let mut text = String::new();
        m.encode(&mut text);
        let labels = "migrated=\"false\",operation_name=\"volume_apply_access_control\",status=\"success\",volume_plugin=\"kubernetes.io/csi:d\"";
        assert!(
            text.contains(&format!("{NAME}_bucket{{{labels},le=\"0.25\"}} 0\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{NAME}_bucket{{{labels},le=\"0.5\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{NAME}_bucket{{{labels},le=\"600\"}} 1\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{NAME}_bucket{{{labels},le=\"+Inf\"}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{NAME}_sum{{{labels}}} 700.3\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{NAME}_count{{{labels}}} 2\n")),
            "{text}"
        );
    }
}
