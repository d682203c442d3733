//! `volsec apply`: prepare one volume (fsGroup ownership, SELinux label, or both).

use super::exit::{Exit, Refusal};
use super::flags::{JobArgs, PodArgs, RunArgs};
use super::pass::execute;
use std::path::PathBuf;

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
    #[command(flatten, next_help_heading = super::flags::POD_MODE)]
    pub from_pod: PodArgs,
}

pub fn run(args: Args) -> Result<Exit, Refusal> {
    if args.from_pod.pod.is_some() {
        if args.job.is_given() {
            return Err(Refusal::new("--pod decides fsGroup, read-only and the label itself: drop --fs-group, --read-only and --selinux-context"));
        }
        return super::plan::apply(&args.from_pod, &args.path, &args.run);
    }
    let job = args
        .job
        .job()
        .map_err(|e| Refusal::new(e).output(args.run.output))?;
    execute(&args.path, &job, &args.run)
}
