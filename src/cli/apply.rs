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
/// With --owner, every entry also gets that owner, as `chown -R UID:GID` gives it (kubelet
/// never changes owners): a drop-in for a chart's volume-permissions init container. A
/// process with only CAP_CHOWN gets kubelet's modes wherever the kernel allows it, and one
/// sentence for the entries it could not.
///
/// Exit status: 0 all done, 1 some entries failed (the root is left unchanged), 2 refused.
///
/// Examples:
///   volsec apply --fs-group 2000 /var/lib/kubelet/pods/UID/volumes/kubernetes.io~csi/pv1/mount
///   volsec apply --fs-group 2000 --change-policy OnRootMismatch --output json /data
///   volsec apply --owner 1001 --fs-group 1001 --change-policy OnRootMismatch --exclude lost+found /data
///   volsec apply --fs-group 2000 --dry-run --list /data
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

    /// Also give every entry this owner (uid), as `chown -R UID:GID` does. Needs --fs-group.
    ///
    /// kubelet never changes owners: this is volsec's opt-in, for the init containers charts
    /// run to chown a volume. With OnRootMismatch, the root's owner is checked too, so a
    /// restart with the same uid:gid is a root check only.
    #[arg(long, value_name = "UID", requires = "fs_group", value_parser = parse_owner, help_heading = super::flags::OWNERSHIP)]
    pub owner: Option<u32>,

    #[command(flatten)]
    pub run: RunArgs,

    /// Take fsGroup, policy and label from a pod's manifests (see `volsec plan`).
    #[command(flatten, next_help_heading = super::flags::POD_MODE)]
    pub from_pod: PodArgs,
}

pub fn run(args: Args) -> Result<Exit, Refusal> {
    if args.from_pod.pod.is_some() {
        if args.job.is_given() || args.owner.is_some() {
            return Err(Refusal::new("--pod decides fsGroup, read-only and the label itself: drop --fs-group, --owner, --read-only and --selinux-context"));
        }
        return super::plan::apply(&args.from_pod, &args.path, &args.run);
    }
    let mut job = args
        .job
        .job()
        .map_err(|e| Refusal::new(e).output(args.run.output))?;
    if let Some(own) = &mut job.ownership {
        own.owner = args.owner;
    }
    execute(&args.path, &job, &args.run)
}

/// `--owner UID`: a uid, not `-1` (which tells chown to leave the owner alone).
fn parse_owner(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|uid| *uid != u32::MAX)
        .ok_or_else(|| format!("{text:?} is not a uid; expected 0 to {}", u32::MAX - 1))
}
