//! `volsec relabel`: the container runtime's recursive relabel, done once and race-free.

use super::apply::{execute, refuse, RunArgs};
use std::path::PathBuf;
use volsec::ownership::ChangePolicy;
use volsec::prepare::Job;
use volsec::selinux::{self, Context, SeLinuxOptions};

/// The long help (`--help`): the subcommand's one-line summary lives in `cli/mod.rs`.
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

/// How a label is given: whole, or as seLinuxOptions to complete.
#[derive(clap::Args, Debug, Clone)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("label-source").required(true).args(["context", "level"])))]
pub struct LabelArgs {
    /// The whole file label, user:role:type[:range].
    #[arg(long, value_name = "CONTEXT", conflicts_with = "user")]
    pub context: Option<String>,

    /// seLinuxOptions.level (e.g. s0:c123,c456), completed with the node's container file
    /// defaults (/usr/share/containers/selinux/contexts, else the policy's lxc_contexts,
    /// else system_u:object_r:container_file_t).
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<String>,

    /// seLinuxOptions.user, replacing the defaults' user (needs --level).
    #[arg(long, value_name = "USER", requires = "level")]
    pub user: Option<String>,
}

impl LabelArgs {
    /// The file label these flags give, checked by the kernel when SELinux is enabled.
    pub fn label(&self) -> Result<Context, String> {
        let label = match &self.context {
            Some(context) => Context::parse(context).map_err(|e| e.to_string())?,
            None => {
                let options = SeLinuxOptions {
                    user: self.user.clone(),
                    level: self.level.clone(),
                    ..Default::default()
                };
                let defaults = selinux::container_file_defaults();
                selinux::file_label(&options, &defaults).map_err(|e| e.to_string())?
            }
        };
        selinux::resolve_label(label).map_err(|e| e.to_string())
    }
}

pub fn run(args: Args) -> u8 {
    let label = match args.label.label() {
        Ok(label) => label,
        Err(e) => return refuse(&e),
    };
    let job = Job {
        ownership: None,
        label: Some(label),
        change_policy: ChangePolicy::Always,
        ignore_unsupported_labels: args.ignore_unsupported,
    };
    execute(&args.path, &job, &args.run)
}
