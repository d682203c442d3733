//! `volsec relabel`: the container runtime's recursive relabel, done once and race-free.

use super::exit::{Exit, Refusal};
use super::flags::{LabelArgs, RunArgs};
use super::pass::execute;
use std::path::PathBuf;
use volsec_core::ownership::ChangePolicy;
use volsec_core::prepare::Job;

/// The long help (`--help`), after the summary and the options.
const LONG_HELP: &str = "\
Apply an SELinux file label to a volume, recursively, the way the container runtimes do
(go-selinux `Chcon`, containerd, CRI-O), in one parallel pass.

Each entry's current label is read and only a label that differs (compared in the
kernel's canonical form) is written, so a second run writes nothing and leaves every
ctime alone. Symlinks are labelled themselves, never followed; the root is labelled last
and only when everything below succeeded. System directories (/, /etc, /var, ..., $HOME)
are refused by identity, whatever path leads to them.

The label is given whole (--context), or as a pod's seLinuxOptions: --level (and
--user) completed with the node's container file defaults, as kubelet does.

Exit status: 0 all done, 1 some entries failed (the root is left unchanged), 2 refused
(bad label, refused root, or a filesystem that cannot store labels).

Examples:
  volsec relabel /data --context system_u:object_r:container_file_t:s0:c123,c456
  volsec relabel /data --level s0:c123,c456
  volsec relabel /mnt/usb --level s0:c1,c2 --ignore-unsupported --output json";

/// Apply an SELinux label recursively: the container runtime's relabel, done once, writing
/// only labels that differ.
#[derive(clap::Args, Debug)]
#[command(after_long_help = LONG_HELP)]
pub struct Args {
    /// The volume's root directory. A symlink anywhere on this path is refused.
    pub path: PathBuf,

    #[command(flatten)]
    pub label: LabelArgs,

    /// A filesystem that cannot store labels (vfat, NFS without labels, a context= mount)
    /// means "relabel not needed", as the runtimes treat it, instead of an error.
    #[arg(long)]
    pub ignore_unsupported: bool,

    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(args: Args) -> Result<Exit, Refusal> {
    let label = args
        .label
        .label()
        .map_err(|e| Refusal::new(e).output(args.run.output))?;
    let job = Job {
        ownership: None,
        label: Some(label),
        change_policy: ChangePolicy::Always,
        ignore_unsupported_labels: args.ignore_unsupported,
    };
    execute(&args.path, &job, &args.run)
}
