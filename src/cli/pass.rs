//! One pass over a volume, as `volsec apply`, `volsec apply --pod` and `volsec relabel` run
//! it: a progress bar while it runs, then its report.

use super::exit::{Exit, Refusal};
use super::flags::RunArgs;
use super::output::{self, Format};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use volsec_core::prepare::{self, Job};
use volsec_core::walk::Progress;

/// Runs a pass with a progress bar and prints its report. With `--list`, stdout carries
/// only the entries a dry run would change, and the report goes to stderr.
pub fn execute(path: &Path, job: &Job, run: &RunArgs) -> Result<Exit, Refusal> {
    let mut options = run.options();
    if run.list {
        options.listing = Some(output::listing(run.output, run.null));
    }
    let progress = Progress::new(options.walk.max_errors);
    let cancel = AtomicBool::new(false);
    let quiet = run.quiet || run.output == Format::Json || run.list;
    let result = output::with_progress(&progress, quiet, || {
        prepare::prepare(path, job, &options, &progress, &cancel)
    });
    match result {
        Ok(report) => {
            if run.list {
                output::flush_listing();
                output::eprint_report(&report, run.output);
            } else {
                output::print_report(&report, run.output);
            }
            Ok(Exit::done_if(report.succeeded()))
        }
        Err(e) => Err(Refusal::new(e).output(run.output)),
    }
}
