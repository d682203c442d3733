//! `volsec relabel`: the container runtime's recursive relabel, done once and race-free.

use super::apply::{execute, refuse_as, RunArgs};
use std::path::PathBuf;
use volsec_core::ownership::ChangePolicy;
use volsec_core::prepare::Job;
use volsec_core::selinux::{self, Context, SeLinuxOptions};

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
    /// The file label these flags give. The kernel (and the policy) check it before a pass
    /// (`prepare`) or a mount option (`mount-option`) uses it.
    pub fn label(&self) -> Result<Context, String> {
        if let Some(context) = &self.context {
            return context_from_text(context);
        }
        let defaults = selinux::container_file_defaults();
        let level = match &self.level {
            Some(level) => Some(raw_range(level, &defaults)?),
            None => None,
        };
        let options = SeLinuxOptions {
            user: self.user.clone(),
            level,
            ..Default::default()
        };
        selinux::file_label(&options, &defaults).map_err(|e| e.to_string())
    }
}

/// A whole context given on the command line (`--context`, `apply --selinux-context`):
/// translated (with libselinux) and parsed.
pub fn context_from_text(text: &str) -> Result<Context, String> {
    Context::parse(&raw_context(text)?).map_err(|e| e.to_string())
}

pub fn run(args: Args) -> u8 {
    let label = match args.label.label() {
        Ok(label) => label,
        Err(e) => return refuse_as(args.run.output, &e),
    };
    let job = Job {
        ownership: None,
        label: Some(label),
        change_policy: ChangePolicy::Always,
        ignore_unsupported_labels: args.ignore_unsupported,
    };
    execute(&args.path, &job, &args.run)
}

/// With the `libselinux` feature, MCS names (mcstransd's) are translated to raw levels.
#[cfg(feature = "libselinux")]
fn raw_context(text: &str) -> Result<String, String> {
    selinux::libselinux::to_raw(text).map_err(|e| e.to_string())
}

#[cfg(not(feature = "libselinux"))]
fn raw_context(text: &str) -> Result<String, String> {
    Ok(text.to_string())
}

#[cfg(feature = "libselinux")]
fn raw_range(range: &str, within: &Context) -> Result<String, String> {
    selinux::libselinux::range_to_raw(range, within).map_err(|e| e.to_string())
}

#[cfg(not(feature = "libselinux"))]
fn raw_range(range: &str, _within: &Context) -> Result<String, String> {
    Ok(range.to_string())
}
