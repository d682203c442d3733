//! The agent's Prometheus metrics and its HTTP health endpoints.
//!
//! kubelet's `storage_operation_duration_seconds` in kubelet's exact shape (see
//! [`crate::kubelet_metric`]): a job that applies an fsGroup is kubelet's
//! `volume_apply_access_control` operation, labelled with the volume's plugin as the caller
//! names it, `status` `success` or `fail-unknown`, kubelet's buckets; so the dashboards and
//! alerts that watch kubelet's ownership pass keep working when volsec does the pass. What
//! kubelet has no operation for stays out of it: a relabel-only job (the container runtime
//! relabels, untimed), a dry run, and a job that OnRootMismatch skipped (kubelet returns
//! before its hook). Every job, those included, is in volsec's own
//! `volsec_job_duration_seconds`, by what it did and how it ended.

use crate::kubelet_metric::{self, StorageOperations};
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

/// What a job does, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Work {
    fs_group,
    relabel,
    fs_group_and_relabel,
}

/// How a job ended, as a label value: the outcome words of the JSON reports.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum JobResult {
    complete,
    partial,
    cancelled,
    skipped,
    refused,
}

/// A finished job, as the metrics see it.
pub struct JobEnd<'a> {
    pub work: Work,
    pub result: JobResult,
    /// kubelet's plugin name for the volume (`volume_plugin`).
    pub volume_plugin: &'a str,
    pub dry_run: bool,
    pub seconds: f64,
    pub report: Option<&'a Report>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    work: Work,
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
    storage_operations: StorageOperations,
    durations: Family<JobLabels, Histogram, fn() -> Histogram>,
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
            storage_operations: StorageOperations::default(),
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
            "volsec_job_duration_seconds",
            "Duration of prepare jobs, by what they did (work) and how they ended (result)",
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

    /// Records a finished job: its duration (in kubelet's metric when kubelet would have
    /// timed it), its inode counts and its skip reason.
    pub fn job_finished(&self, end: JobEnd<'_>) {
        self.durations
            .get_or_create(&JobLabels {
                work: end.work,
                result: end.result,
            })
            .observe(end.seconds);
        let kubelet_status = match end.result {
            JobResult::complete => Some(kubelet_metric::Status::Success),
            JobResult::partial | JobResult::cancelled | JobResult::refused => {
                Some(kubelet_metric::Status::FailUnknown)
            }
            JobResult::skipped => None,
        };
        if let (Some(status), false, Work::fs_group | Work::fs_group_and_relabel) =
            (kubelet_status, end.dry_run, end.work)
        {
            self.storage_operations.observe(
                end.volume_plugin,
                kubelet_metric::APPLY_ACCESS_CONTROL,
                status,
                end.seconds,
            );
        }
        let Some(report) = end.report else { return };
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

    /// The exposition: kubelet's metric, then volsec's own.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.storage_operations.encode(&mut out);
        kubelet_metric::append_registry(&mut out, &self.registry);
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
