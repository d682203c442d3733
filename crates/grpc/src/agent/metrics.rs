//! The agent's Prometheus metrics and its HTTP health endpoints.
//!
//! The duration histogram carries kubelet's name and operation names
//! (`storage_operation_duration_seconds`, `volume_fsgroup_recursive_apply`), so the
//! dashboards and alerts that watch kubelet's ownership pass keep working when volsec does
//! the pass. The relabel is reported as its own operation, `volume_selinux_relabel`: a
//! fused pass that does both is observed once under each.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use volsec_core::prepare::{Report, SkipReason};

/// kubelet's operation names.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Operation {
    volume_fsgroup_recursive_apply,
    volume_selinux_relabel,
}

/// How a job ended, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum JobResult {
    success,
    partial,
    cancelled,
    skipped,
    refused,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation_name: Operation,
    result: JobResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InodeLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkipLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    disposition: &'static str,
}

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    durations: Family<OperationLabels, Histogram, fn() -> Histogram>,
    inodes: Family<InodeLabels, Counter>,
    skips: Family<SkipLabels, Counter>,
    calls: Family<CallLabels, Counter>,
    walks: Counter,
    pub jobs_running: Gauge,
    pub jobs_queued: Gauge,
    /// False while starting and once shutdown began: `/readyz` answers 503.
    ready: AtomicBool,
}

fn duration_histogram() -> Histogram {
    // 1 ms .. ~4.6 h: a skipped check and a walk of millions of inodes both land in a bucket.
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
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
            durations: Family::new_with_constructor(duration_histogram),
            inodes: Family::default(),
            skips: Family::default(),
            calls: Family::default(),
            walks: Counter::default(),
            jobs_running: Gauge::default(),
            jobs_queued: Gauge::default(),
            ready: AtomicBool::new(false),
        };
        let r = &mut m.registry;
        r.register(
            "storage_operation_duration_seconds",
            "Duration of volume preparation operations (kubelet's names), by operation_name and result",
            m.durations.clone(),
        );
        r.register(
            "volsec_inodes",
            "Inodes examined by prepare passes, by result: changed, unchanged, failed, vanished",
            m.inodes.clone(),
        );
        r.register(
            "volsec_skips",
            "Prepare jobs that needed no walk, by reason",
            m.skips.clone(),
        );
        r.register(
            "volsec_prepare_calls",
            "Prepare calls, by disposition: new (started a job) or joined (attached to a running one)",
            m.calls.clone(),
        );
        r.register(
            "volsec_walks",
            "Walks started (a job that skipped or was refused does not walk)",
            m.walks.clone(),
        );
        r.register(
            "volsec_jobs_running",
            "Prepare jobs running now",
            m.jobs_running.clone(),
        );
        r.register(
            "volsec_jobs_queued",
            "Prepare jobs waiting behind another job on the same path or for a free slot",
            m.jobs_queued.clone(),
        );
        m
    }

    pub fn call(&self, joined: bool) {
        let disposition = if joined { "joined" } else { "new" };
        self.calls.get_or_create(&CallLabels { disposition }).inc();
    }

    pub fn walk_started(&self) {
        self.walks.inc();
    }

    /// Records a finished job: its duration under each operation it did, its inode counts
    /// and its skip reason.
    pub fn job_finished(
        &self,
        ops: &[Operation],
        result: JobResult,
        seconds: f64,
        report: Option<&Report>,
    ) {
        for &operation_name in ops {
            self.durations
                .get_or_create(&OperationLabels {
                    operation_name,
                    result,
                })
                .observe(seconds);
        }
        let Some(report) = report else { return };
        let t = &report.tally;
        for (result, n) in [
            ("changed", t.changed),
            ("unchanged", t.unchanged),
            ("failed", t.failed),
            ("vanished", t.vanished),
        ] {
            self.inodes.get_or_create(&InodeLabels { result }).inc_by(n);
        }
        if let Some(reason) = report.skipped_reason {
            let reason = match reason {
                SkipReason::OnRootMismatch => "OnRootMismatch",
                SkipReason::LabelsUnsupported => "LabelsUnsupported",
            };
            self.skips.get_or_create(&SkipLabels { reason }).inc();
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// `/metrics`, `/healthz` (the process serves HTTP) and `/readyz` (it accepts Prepare calls).
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
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
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
