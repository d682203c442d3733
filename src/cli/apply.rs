//! `volsec apply`: prepare one volume (fsGroup ownership, SELinux label, or both).

use super::output::{self, Format};
use super::{EXIT_OK, EXIT_PARTIAL, EXIT_REFUSED};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use volsec_core::ownership::{ChangePolicy, Ownership};
use volsec_core::prepare::{self, Job, Options};
use volsec_core::walk::{Progress, WalkOptions};

/// Give a volume kubelet's fsGroup ownership and/or an SELinux label, in one parallel pass.
///
/// Every entry gets group fsGroup (the owner is untouched) and the mask OR-ed into its mode
/// (files 0660, directories 02770; 0440 and 02550 with --read-only); symlinks get the group
/// themselves and are never followed or chmodded. Only what differs is written, and the
/// root is changed last, only when everything below succeeded.
///
/// Exit status: 0 all done, 1 some entries failed (the root is left unchanged), 2 refused.
///
/// Examples:
///   volsec apply --fs-group 2000 /var/lib/kubelet/pods/UID/volumes/kubernetes.io~csi/pv1/mount
///   volsec apply --fs-group 2000 --change-policy OnRootMismatch --output json /data
///   volsec apply --fs-group 2000 --selinux-context system_u:object_r:container_file_t:s0:c1,c2 /data
///   volsec apply --pod pod.yaml --volume data --pv pv.yaml --csidriver driver.yaml /mnt/data
///
/// With --pod and --volume, `volsec plan` decides fsGroup, policy and label as kubelet does
/// (same flags: --pv, --csidriver, --csi-socket, --selinux-enabled, --feature-gates, ...),
/// and apply runs what the plan leaves to volsec, or says why there is nothing to do.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The volume's root directory. A symlink anywhere on this path is refused.
    pub path: PathBuf,

    #[command(flatten)]
    pub job: JobArgs,

    #[command(flatten)]
    pub run: RunArgs,

    /// Take fsGroup, policy and label from a pod's manifests (see `volsec plan`).
    #[command(flatten)]
    pub from_pod: super::plan::PodArgs,
}

/// What a volume must end up with: the flags `volsec apply` and `volsec client prepare`
/// share.
#[derive(clap::Args, Debug, Clone)]
pub struct JobArgs {
    /// The pod's fsGroup: the group every entry gets.
    #[arg(long, value_name = "GID", value_parser = parse_fs_group)]
    pub fs_group: Option<u32>,

    /// The volume is mounted read-only: masks 0440 (files) and 02550 (directories).
    #[arg(long)]
    pub read_only: bool,

    /// fsGroupChangePolicy: OnRootMismatch skips the walk when the root already matches.
    #[arg(long, value_parser = super::flags::change_policy(), default_value_t = ChangePolicy::Always)]
    pub change_policy: ChangePolicy,

    /// Also apply this SELinux file label, in the same walk.
    #[arg(long, value_name = "CONTEXT")]
    pub selinux_context: Option<String>,

    /// A filesystem that cannot store labels is "relabel not needed", not an error.
    #[arg(long)]
    pub ignore_unsupported: bool,
}

/// Flags shared by every command that walks a volume.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Worker threads (default: one per online CPU).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub threads: usize,

    /// Walk into nested mount points instead of reporting and skipping them.
    #[arg(long)]
    pub cross_mounts: bool,

    /// Report what would change without changing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// How many failures to list with their paths (all are counted).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub max_errors: usize,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,

    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

impl RunArgs {
    pub fn options(&self) -> Options {
        Options {
            walk: WalkOptions {
                threads: self.threads,
                cross_mounts: self.cross_mounts,
                max_errors: self.max_errors,
            },
            dry_run: self.dry_run,
        }
    }
}

pub fn run(args: Args) -> u8 {
    if args.from_pod.pod.is_some() {
        if args.job.is_given() {
            return refuse(&"--pod decides fsGroup, read-only and the label itself: drop --fs-group, --read-only and --selinux-context");
        }
        return super::plan::apply(&args.from_pod, &args.path, &args.run);
    }
    match args.job.job() {
        Ok(job) => execute(&args.path, &job, &args.run),
        Err(e) => refuse_as(args.run.output, &e),
    }
}

impl JobArgs {
    /// Whether any of what a pod's manifests would decide was given by hand.
    fn is_given(&self) -> bool {
        self.fs_group.is_some() || self.selinux_context.is_some() || self.read_only
    }

    /// The job, with the label parsed as `volsec relabel` parses it (the pass checks it).
    fn job(&self) -> Result<Job, String> {
        let label = self
            .selinux_context
            .as_deref()
            .map(super::relabel::context_from_text)
            .transpose()?;
        Ok(Job {
            ownership: self.fs_group.map(|fs_group| Ownership {
                fs_group,
                read_only: self.read_only,
            }),
            label,
            change_policy: self.change_policy,
            ignore_unsupported_labels: self.ignore_unsupported,
        })
    }
}

/// Runs a pass with a progress bar and prints its report; returns the exit status.
pub fn execute(path: &std::path::Path, job: &Job, run: &RunArgs) -> u8 {
    let options = run.options();
    let progress = Progress::new(options.walk.max_errors);
    let cancel = AtomicBool::new(false);
    let quiet = run.quiet || run.output == Format::Json;
    let result = output::with_progress(&progress, quiet, || {
        prepare::prepare(path, job, &options, &progress, &cancel)
    });
    match result {
        Ok(report) => {
            output::print_report(&report, run.output);
            if report.succeeded() {
                EXIT_OK
            } else {
                EXIT_PARTIAL
            }
        }
        Err(e) => refuse_as(run.output, &e),
    }
}

pub fn refuse(err: &dyn std::fmt::Display) -> u8 {
    eprintln!("volsec: {err}");
    EXIT_REFUSED
}

/// [`refuse`], and with `--output json` also a document on stdout, so a machine reading
/// stdout learns why nothing was done: `{"outcome": "refused", "error": "..."}`.
pub fn refuse_as(format: Format, err: &dyn std::fmt::Display) -> u8 {
    if format == Format::Json {
        let doc = serde_json::json!({ "outcome": "refused", "error": err.to_string() });
        println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
    }
    refuse(err)
}

fn parse_fs_group(text: &str) -> Result<u32, String> {
    let value: i64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    volsec_core::ownership::fs_group(value)
}
