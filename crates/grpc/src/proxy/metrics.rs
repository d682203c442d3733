//! The proxy's Prometheus metrics and health endpoints.
//!
//! Once the proxy claims VOLUME_MOUNT_GROUP, kubelet's own fsGroup metric no longer fires
//! for the driver's volumes, so the proxy emits it in kubelet's exact shape (read from
//! kubelet's `pkg/volume/util/metrics.go`, see [`crate::kubelet_metric`]):
//! `storage_operation_duration_seconds` with the labels `volume_plugin`
//! (`kubernetes.io/csi:<driver>`), `operation_name`, `status` (`success` or `fail-unknown`)
//! and `migrated`, kubelet's buckets, and the operation name `volume_apply_access_control`
//! that kubelet has used for the fsGroup step since 1.23 (kubernetes PR 105885). Dashboards
//! and alerts written for kubelet keep working. `/metrics` is Prometheus's text format, as
//! kubelet serves it.
//!
//! Besides: every forwarded call by method and gRPC code (count and latency), passes
//! started, joined and running, and why passes were skipped.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use crate::kubelet_metric::APPLY_ACCESS_CONTROL;
use crate::kubelet_metric::{self, StorageOperations};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Every metric the proxy exports.
pub struct Metrics {
    registry: Registry,
    storage_operations: StorageOperations,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<CallLabels, Histogram, fn() -> Histogram>,
    passes_started: Counter,
    passes_joined: Counter,
    passes_skipped: Family<ReasonLabels, Counter>,
    aborted_in_progress: Counter,
    pub passes_running: Gauge,
    ready: AtomicBool,
}

fn call_histogram() -> Histogram {
    // 100 µs .. ~26 s: forwarding adds microseconds; a driver's mount takes seconds.
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            storage_operations: StorageOperations::default(),
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(call_histogram),
            passes_started: Counter::default(),
            passes_joined: Counter::default(),
            passes_skipped: Family::default(),
            aborted_in_progress: Counter::default(),
            passes_running: Gauge::default(),
            ready: AtomicBool::new(false),
        };
        let r = &mut m.registry;
        r.register(
            "volsec_csi_proxy_calls",
            "CSI calls answered by the proxy, by gRPC method and code",
            m.calls.clone(),
        );
        r.register(
            "volsec_csi_proxy_call_duration_seconds",
            "Time from a CSI call's arrival to the proxy's answer, by gRPC method and code",
            m.call_seconds.clone(),
        );
        r.register(
            "volsec_csi_proxy_passes_started",
            "Passes started after a NodePublishVolume (a joined retry starts none)",
            m.passes_started.clone(),
        );
        r.register(
            "volsec_csi_proxy_passes_joined",
            "NodePublishVolume calls that joined a pass already running for the same target and fsGroup",
            m.passes_joined.clone(),
        );
        r.register(
            "volsec_csi_proxy_passes_skipped",
            "NodePublishVolume calls that needed no pass, by reason",
            m.passes_skipped.clone(),
        );
        r.register(
            "volsec_csi_proxy_aborted_in_progress",
            "NodePublishVolume calls answered ABORTED with progress because the pass outlived the caller's deadline",
            m.aborted_in_progress.clone(),
        );
        r.register(
            "volsec_csi_proxy_passes_running",
            "Passes running or queued now",
            m.passes_running.clone(),
        );
        m
    }

    /// One answered call.
    pub fn call(&self, method: &str, code: tonic::Code, seconds: f64) {
        let labels = CallLabels {
            method: method.to_string(),
            code: format!("{code:?}"),
        };
        self.calls.get_or_create(&labels).inc();
        self.call_seconds.get_or_create(&labels).observe(seconds);
    }

    /// A finished pass, as kubelet records its fsGroup step.
    pub fn pass_finished(&self, driver: &str, success: bool, seconds: f64) {
        let status = if success {
            kubelet_metric::Status::Success
        } else {
            kubelet_metric::Status::FailUnknown
        };
        self.storage_operations.observe(
            &kubelet_metric::csi_plugin(driver),
            APPLY_ACCESS_CONTROL,
            status,
            seconds,
        );
    }

    pub fn pass_started(&self) {
        self.passes_started.inc();
    }

    pub fn pass_joined(&self) {
        self.passes_joined.inc();
    }

    pub fn pass_skipped(&self, reason: &'static str) {
        self.passes_skipped
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn aborted_in_progress(&self) {
        self.aborted_in_progress.inc();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The exposition: kubelet's metric, then the proxy's own.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.storage_operations.encode(&mut out);
        kubelet_metric::append_registry(&mut out, &self.registry);
        out
    }
}

/// `/metrics`, `/healthz` (the process serves HTTP) and `/readyz` (it is forwarding and
/// not shutting down).
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    use axum::routing::get;
    let m = metrics.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            kubelet_metric::CONTENT_TYPE,
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = metrics.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n").into_response()
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: starting or shutting down\n",
                        )
                            .into_response()
                    }
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_shape() {
        let m = Metrics::new();
        m.pass_finished("csi.example.com", true, 0.3);
        m.call("/csi.v1.Node/NodePublishVolume", tonic::Code::Aborted, 0.01);
        let text = m.encode();
        assert!(text.contains("storage_operation_duration_seconds_count{migrated=\"false\",operation_name=\"volume_apply_access_control\",status=\"success\",volume_plugin=\"kubernetes.io/csi:csi.example.com\"} 1"), "{text}");
        assert!(text.contains("le=\"600\""), "{text}");
        assert!(text.contains("volsec_csi_proxy_calls_total{method=\"/csi.v1.Node/NodePublishVolume\",code=\"Aborted\"} 1"), "{text}");
    }
}
