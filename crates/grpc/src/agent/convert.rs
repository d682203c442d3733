//! Every conversion between volsec-core's types and the wire's (`volsec.v1`), in one place,
//! so a field added on either side has one spot to be mapped in.

use super::proto;
use std::borrow::Cow;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use tonic::Status;
use volsec_core::ownership::ChangePolicy;
use volsec_core::prepare::{Job, PassOutcome, Report, SkipReason};
use volsec_core::walk::{Errno, Failure, Tally};

/// The wire's name for an fsGroupChangePolicy.
pub fn policy_to_proto(p: ChangePolicy) -> proto::ChangePolicy {
    match p {
        ChangePolicy::Always => proto::ChangePolicy::Always,
        ChangePolicy::OnRootMismatch => proto::ChangePolicy::OnRootMismatch,
    }
}

/// A request's `change_policy`; unset means `Always`, as kubelet's default.
pub fn policy_from_proto(value: i32) -> Result<ChangePolicy, Status> {
    match proto::ChangePolicy::try_from(value) {
        Ok(proto::ChangePolicy::Unspecified | proto::ChangePolicy::Always) => {
            Ok(ChangePolicy::Always)
        }
        Ok(proto::ChangePolicy::OnRootMismatch) => Ok(ChangePolicy::OnRootMismatch),
        Err(_) => Err(Status::invalid_argument(format!(
            "change_policy: unknown value {value}; expected CHANGE_POLICY_ALWAYS or CHANGE_POLICY_ON_ROOT_MISMATCH"
        ))),
    }
}

/// The Prepare call that runs `job` on `path`, as the Plan RPC answers it; `volume_plugin`
/// is kubelet's name of the volume's plugin, when known.
pub fn prepare_request(
    path: &str,
    job: &Job,
    volume_plugin: Option<String>,
) -> proto::PrepareRequest {
    proto::PrepareRequest {
        path: path.to_string(),
        fs_group: job.ownership.map(|o| o.fs_group),
        read_only: job.ownership.is_some_and(|o| o.read_only),
        change_policy: policy_to_proto(job.change_policy) as i32,
        selinux_context: job
            .label
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        ignore_unsupported_labels: job.ignore_unsupported_labels,
        dry_run: false,
        cross_mounts: false,
        volume_plugin: volume_plugin.unwrap_or_default(),
    }
}

/// The wire's outcome of a pass that ran (`REFUSED` is the agent's own, for a pass that
/// never started).
pub fn outcome_to_proto(outcome: PassOutcome) -> proto::Outcome {
    match outcome {
        PassOutcome::Complete => proto::Outcome::Complete,
        PassOutcome::Partial => proto::Outcome::Partial,
        PassOutcome::Cancelled => proto::Outcome::Cancelled,
        PassOutcome::Skipped => proto::Outcome::Skipped,
    }
}

/// A pass's outcome from the wire; `None` for `REFUSED` and unset, which carry no report.
pub fn outcome_from_proto(outcome: proto::Outcome) -> Option<PassOutcome> {
    match outcome {
        proto::Outcome::Complete => Some(PassOutcome::Complete),
        proto::Outcome::Partial => Some(PassOutcome::Partial),
        proto::Outcome::Cancelled => Some(PassOutcome::Cancelled),
        proto::Outcome::Skipped => Some(PassOutcome::Skipped),
        _ => None,
    }
}

fn skip_reason_to_proto(reason: Option<SkipReason>) -> proto::SkipReason {
    match reason {
        None => proto::SkipReason::Unspecified,
        Some(SkipReason::OnRootMismatch) => proto::SkipReason::OnRootMismatch,
        Some(SkipReason::LabelsUnsupported) => proto::SkipReason::LabelsUnsupported,
    }
}

fn skip_reason_from_proto(reason: proto::SkipReason) -> Option<SkipReason> {
    match reason {
        proto::SkipReason::Unspecified => None,
        proto::SkipReason::OnRootMismatch => Some(SkipReason::OnRootMismatch),
        proto::SkipReason::LabelsUnsupported => Some(SkipReason::LabelsUnsupported),
    }
}

/// A path's exact bytes for the wire, when its string is lossy (not UTF-8); else empty.
fn exact_bytes(path: &Path) -> Vec<u8> {
    match path.to_str() {
        Some(_) => Vec::new(),
        None => path.as_os_str().as_bytes().to_vec(),
    }
}

/// A path from the wire: its exact bytes when sent, else its string.
fn path_from_wire(path: &str, bytes: &[u8]) -> PathBuf {
    if bytes.is_empty() {
        PathBuf::from(path)
    } else {
        PathBuf::from(OsString::from_vec(bytes.to_vec()))
    }
}

/// The result message of a finished pass.
pub fn result_from_report(r: &Report) -> proto::Result {
    let t = &r.tally;
    proto::Result {
        outcome: outcome_to_proto(r.outcome) as i32,
        visited: t.visited,
        changed: t.changed,
        unchanged: t.unchanged,
        failed: t.failed,
        vanished: t.vanished,
        skipped_mounts: t.skipped_mounts,
        failures: r
            .errors
            .iter()
            .map(|f| proto::Failure {
                path: f.path.display().to_string(),
                op: f.op.to_string(),
                errno: f.errno.to_string(),
                message: f.message.clone(),
                path_bytes: exact_bytes(&f.path),
            })
            .collect(),
        nested_mounts: r
            .nested_mounts
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        skip_reason: skip_reason_to_proto(r.skipped_reason) as i32,
        skip_message: r
            .skipped_reason
            .map(|reason| reason.to_string())
            .unwrap_or_default(),
        labels_unsupported: r.labels_unsupported,
        error: String::new(),
        elapsed_ms: r.elapsed_ms,
        inodes_per_second: r.inodes_per_second,
        threads: r.threads as u32,
        dry_run: r.dry_run,
        nested_mount_bytes: if r.nested_mounts.iter().all(|p| p.to_str().is_some()) {
            Vec::new()
        } else {
            r.nested_mounts
                .iter()
                .map(|p| p.as_os_str().as_bytes().to_vec())
                .collect()
        },
        hard_linked: r.hard_linked,
        devices: r.devices,
    }
}

/// The report of a pass the agent ran, from the request and its result, so a caller prints
/// it as `volsec apply` does. `None` for a result without a pass (refused, or cancelled
/// before it started).
pub fn report_from_result(request: &proto::PrepareRequest, r: &proto::Result) -> Option<Report> {
    if !r.error.is_empty() {
        return None;
    }
    let outcome = outcome_from_proto(r.outcome())?;
    let change_policy = policy_from_proto(request.change_policy).ok()?;
    Some(Report {
        path: PathBuf::from(&request.path),
        outcome,
        tally: Tally {
            visited: r.visited,
            changed: r.changed,
            unchanged: r.unchanged,
            failed: r.failed,
            vanished: r.vanished,
            skipped_mounts: r.skipped_mounts,
            excluded: 0,
        },
        errors: r
            .failures
            .iter()
            .map(|f| Failure {
                path: path_from_wire(&f.path, &f.path_bytes),
                op: Cow::Owned(f.op.clone()),
                // An agent of another version may name an errno this one does not know.
                errno: f.errno.parse().unwrap_or(Errno::IO),
                message: f.message.clone(),
            })
            .collect(),
        nested_mounts: if r.nested_mount_bytes.len() == r.nested_mounts.len() {
            r.nested_mount_bytes
                .iter()
                .map(|b| PathBuf::from(OsString::from_vec(b.clone())))
                .collect()
        } else {
            r.nested_mounts.iter().map(PathBuf::from).collect()
        },
        hard_linked: r.hard_linked,
        devices: r.devices,
        skipped_reason: skip_reason_from_proto(r.skip_reason()),
        labels_unsupported: r.labels_unsupported,
        not_permitted: Vec::new(),
        owner: None,
        stopped: None,
        fs_group: request.fs_group,
        read_only: request.read_only,
        selinux_label: Some(request.selinux_context.clone()).filter(|c| !c.is_empty()),
        change_policy: change_policy.as_str(),
        dry_run: r.dry_run,
        threads: r.threads as usize,
        elapsed_ms: r.elapsed_ms,
        inodes_per_second: r.inodes_per_second,
    })
}
