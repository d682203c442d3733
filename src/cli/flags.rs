//! Flag groups and parsers shared by several subcommands, so each flag is declared, and
//! each spelling accepted, in one place: what a pass must do ([`JobArgs`]), how it runs
//! ([`RunArgs`]), a label given whole or as seLinuxOptions ([`LabelArgs`]), and the
//! manifests and node facts a plan is made from ([`PodArgs`]).

use super::output::Format;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use std::path::PathBuf;
use std::time::Duration;
use volsec_core::ownership::{ChangePolicy, Ownership};
use volsec_core::prepare::{Job, Options};
use volsec_core::selinux::{self, Context, SeLinuxOptions};
use volsec_core::walk::WalkOptions;

/// `--change-policy Always|OnRootMismatch`, spelled as in a pod manifest.
pub fn change_policy() -> impl TypedValueParser<Value = ChangePolicy> {
    PossibleValuesParser::new(ChangePolicy::ALL.map(|p| p.as_str()))
        .map(|s| s.parse().expect("one of the possible values"))
}

/// The help headings flags are grouped under.
pub const OWNERSHIP: &str = "Ownership";
pub const SELINUX: &str = "SELinux";
pub const PASS: &str = "Pass";
pub const OUTPUT: &str = "Output";
pub const POD_MODE: &str = "Pod mode (see `volsec plan`)";

/// What a volume must end up with: the flags `volsec apply` and `volsec client prepare`
/// share.
#[derive(clap::Args, Debug, Clone)]
pub struct JobArgs {
    /// The pod's fsGroup: the group every entry gets.
    ///
    /// The owner is untouched; the mask is OR-ed into each mode (files 0660, directories
    /// 02770) and symlinks get the group themselves, never followed.
    #[arg(long, value_name = "GID", value_parser = parse_fs_group, help_heading = OWNERSHIP)]
    pub fs_group: Option<u32>,

    /// The volume is mounted read-only (masks 0440 and 02550).
    ///
    /// Files get 0440 OR-ed into their mode, directories 02550, instead of 0660 and 02770.
    #[arg(long, help_heading = OWNERSHIP)]
    pub read_only: bool,

    /// fsGroupChangePolicy.
    ///
    /// OnRootMismatch skips the walk when the root already has fsGroup, setgid and the
    /// permission bits.
    #[arg(
        long,
        value_name = "POLICY",
        value_parser = change_policy(),
        default_value_t = ChangePolicy::Always,
        help_heading = OWNERSHIP
    )]
    pub change_policy: ChangePolicy,

    /// Also apply this SELinux file label, in the same walk.
    ///
    /// A whole context, user:role:type[:range]; the kernel checks it before the pass.
    #[arg(long, value_name = "CONTEXT", help_heading = SELINUX)]
    pub selinux_context: Option<String>,

    /// No labels on the filesystem: "relabel not needed", not an error.
    ///
    /// A filesystem that cannot store labels (vfat, NFS without labels, a context= mount)
    /// means the label need not be applied, as the container runtimes treat it.
    #[arg(long, help_heading = SELINUX)]
    pub ignore_unsupported: bool,
}

impl JobArgs {
    /// Whether any of what a pod's manifests would decide was given by hand.
    pub fn is_given(&self) -> bool {
        self.fs_group.is_some() || self.selinux_context.is_some() || self.read_only
    }

    /// The job, with the label parsed as `volsec relabel` parses it (the pass checks it).
    pub fn job(&self) -> Result<Job, String> {
        let label = self
            .selinux_context
            .as_deref()
            .map(context_from_text)
            .transpose()?;
        Ok(Job {
            ownership: self.fs_group.map(|fs_group| Ownership {
                fs_group,
                read_only: self.read_only,
                owner: None,
            }),
            label,
            change_policy: self.change_policy,
            ignore_unsupported_labels: self.ignore_unsupported,
        })
    }
}

fn parse_fs_group(text: &str) -> Result<u32, String> {
    let value: i64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    volsec_core::ownership::fs_group(value).map_err(|e| e.to_string())
}

/// Flags shared by every command that walks a volume.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Worker threads (default: chosen by the volume).
    ///
    /// Default: one per online CPU on a local filesystem; on a network-like one (NFS,
    /// SMB/CIFS, CephFS, Lustre, GPFS, 9p, FUSE) adapted while the walk runs, as many calls
    /// in flight as raise throughput.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true,
        value_parser = workers,
        help_heading = PASS
    )]
    pub threads: usize,

    /// The most workers an adapted walk may keep in flight (default 256, at most 1024).
    ///
    /// Also capped by the open-files limit.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        hide_default_value = true,
        conflicts_with = "threads",
        value_parser = workers,
        help_heading = PASS
    )]
    pub max_threads: usize,

    /// Wait up to DURATION for another pass on the same volume to end (e.g. 30s, 2m;
    /// default: refuse at once).
    ///
    /// One pass per volume at a time: a second one, from this command or the agent, holds
    /// back until the first ends, or refuses in one sentence when the wait runs out.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "0s",
        hide_default_value = true,
        value_parser = parse_duration,
        help_heading = PASS
    )]
    pub wait: Duration,

    /// Walk into nested mount points instead of reporting and skipping them.
    #[arg(long, help_heading = PASS)]
    pub cross_mounts: bool,

    /// Report what would change without changing anything.
    #[arg(long, help_heading = PASS)]
    pub dry_run: bool,

    /// Leave this entry directly below the root alone (repeatable), e.g. lost+found.
    ///
    /// A name, not a path: the entry is neither changed nor descended, and is counted as
    /// excluded. The root is still changed last, so OnRootMismatch skips the next pass.
    #[arg(long, value_name = "NAME", value_parser = parse_exclude, help_heading = PASS)]
    pub exclude: Vec<std::ffi::CString>,

    /// With --dry-run, print each entry that would change and what would change.
    ///
    /// One line per entry, e.g. `gid 0 -> 2000, mode 0644 -> 0664<TAB>PATH`, names
    /// escaped as `ls -b` does; one JSON object per line with --output json. The summary
    /// then goes to stderr, so stdout holds only the list.
    #[arg(long, requires = "dry_run", help_heading = OUTPUT)]
    pub list: bool,

    /// With --list, end each entry with a NUL instead of a newline, the path unescaped.
    #[arg(short = '0', long = "null", requires = "list", help_heading = OUTPUT)]
    pub null: bool,

    /// How many failures to list with their paths (all are counted).
    #[arg(long, value_name = "N", default_value_t = 20, help_heading = OUTPUT)]
    pub max_errors: usize,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, help_heading = OUTPUT)]
    pub output: Format,

    /// No progress bar.
    #[arg(long, short, help_heading = OUTPUT)]
    pub quiet: bool,
}

impl RunArgs {
    pub fn options(&self) -> Options {
        volsec_core::walk::concurrency::set_max_threads(self.max_threads);
        volsec_core::prepare::set_lock_wait(self.wait);
        Options {
            walk: WalkOptions {
                threads: self.threads,
                cross_mounts: self.cross_mounts,
                max_errors: self.max_errors,
                exclude: self.exclude.clone(),
            },
            dry_run: self.dry_run,
            listing: None,
        }
    }
}

/// `--exclude NAME`: one name directly below the root, never a path.
fn parse_exclude(text: &str) -> Result<std::ffi::CString, String> {
    if text.is_empty() || text == "." || text == ".." || text.contains('/') {
        return Err(format!(
            "{text:?} is not a name directly below the root (no '/', not '.' or '..')"
        ));
    }
    std::ffi::CString::new(text).map_err(|_| format!("{text:?} contains a NUL byte"))
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
    #[arg(long, value_name = "LEVEL", value_parser = non_empty)]
    pub level: Option<String>,

    /// seLinuxOptions.user, replacing the defaults' user (needs --level).
    #[arg(long, value_name = "USER", requires = "level", value_parser = non_empty)]
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

/// A count of walker threads (`--threads`, `--max-threads`): at most
/// [`MAX_WORKERS`](volsec_core::walk::concurrency::MAX_WORKERS); 0 lets the volume choose.
pub fn workers(text: &str) -> Result<usize, String> {
    let max = volsec_core::walk::concurrency::MAX_WORKERS;
    match text.parse::<usize>() {
        Ok(n) if n <= max => Ok(n),
        Ok(_) => Err(format!(
            "at most {max} walker threads (no volume serves more calls at once, and each is a thread of its own); 0 lets the volume choose"
        )),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}

/// A count that must be at least one (`--max-jobs`, `--max-passes`), and at most
/// [`MAX_WORKERS`](volsec_core::walk::concurrency::MAX_WORKERS).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    let max = volsec_core::walk::concurrency::MAX_WORKERS;
    match text.parse::<usize>() {
        Ok(0) => Err("0 would run nothing: give at least 1".to_string()),
        Ok(n) if n <= max => Ok(n),
        Ok(_) => Err(format!("at most {max}")),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}

/// A value that may not be empty (`--level ''` would complete to a label without a level).
pub fn non_empty(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("an empty value means nothing: give one, or leave the flag out".to_string())
    } else {
        Ok(text.to_string())
    }
}

/// `--csi-timeout`: seconds, more than 0 (0 would call every driver unreachable before it
/// could answer) and at most a day.
fn csi_seconds(text: &str) -> Result<f64, String> {
    let max = volsec_grpc::agent::slow::MAX_DURATION.as_secs_f64();
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= max => Ok(secs),
        _ => Err(format!(
            "not a wait in seconds: give more than 0 and at most {max} (e.g. 5)"
        )),
    }
}

/// A duration flag: `30s`, `500ms`, `2m` or seconds, at most a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    volsec_grpc::agent::slow::parse_duration(text).map_err(|e| e.to_string())
}

/// An `--allowed-root` of the agent or the CSI proxy: absolute, not `/`, not through a
/// symlink; checked before the socket is bound.
pub fn allowed_root(text: &str) -> Result<PathBuf, String> {
    volsec_grpc::agent::security::allowed_root(std::path::Path::new(text))
        .map_err(|e| e.to_string())
}

/// A whole context given on the command line (`--context`, `apply --selinux-context`):
/// translated (with libselinux) and parsed.
pub fn context_from_text(text: &str) -> Result<Context, String> {
    Context::parse(&raw_context(text)?).map_err(|e| e.to_string())
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

/// The manifests and node facts a plan is made from (shared with `volsec apply --pod`).
#[derive(clap::Args, Debug, Clone)]
pub struct PodArgs {
    /// The Pod manifest (YAML or JSON).
    ///
    /// In a multi-document file, its one Pod is used.
    #[arg(long, value_name = "FILE", requires = "volume")]
    pub pod: Option<PathBuf>,

    /// The name of the volume in the pod's spec.volumes.
    #[arg(long, value_name = "NAME", requires = "pod")]
    pub volume: Option<String>,

    /// The PersistentVolume bound to the volume's claim.
    ///
    /// persistentVolumeClaim and ephemeral volumes need it.
    #[arg(long, value_name = "FILE")]
    pub pv: Option<PathBuf>,

    /// The CSIDriver object of the volume's driver.
    ///
    /// Its fsGroupPolicy and seLinuxMount are used; without it, Kubernetes' defaults apply (ReadWriteOnceWithFSType, no seLinuxMount).
    #[arg(long, value_name = "FILE")]
    pub csidriver: Option<PathBuf>,

    /// The CSI driver's socket, to ask it for VOLUME_MOUNT_GROUP.
    ///
    /// The driver is asked NodeGetCapabilities (and its name, which must be the volume's
    /// driver). Without it, the driver is assumed not to have the capability.
    #[arg(long, value_name = "PATH")]
    pub csi_socket: Option<PathBuf>,

    /// How long to wait for the CSI driver's answer [default: 5].
    #[arg(long, value_name = "SECONDS", hide_short_help = true, value_parser = csi_seconds)]
    pub csi_timeout: Option<f64>,

    /// SELinux is enabled on the node (labels are applied only then).
    #[arg(long)]
    pub selinux_enabled: bool,

    /// kubelet feature gates, e.g. SELinuxMount=true,...
    ///
    /// Spelled as kubelet spells them. Known: SELinuxMountReadWriteOncePod, SELinuxChangePolicy, SELinuxMount,
    /// SupplementalGroupsPolicy; the others keep the release's defaults.
    #[arg(long, value_name = "GATES")]
    pub feature_gates: Option<String>,

    /// The node's Kubernetes release, 1.25 to 1.36 [default: 1.36].
    ///
    /// Feature gates default as in it.
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,

    /// The node's container file label defaults (user:role:type:level).
    ///
    /// By default read from /usr/share/containers/selinux/contexts, else from the policy's
    /// lxc_contexts.
    #[arg(long, value_name = "CONTEXT", hide_short_help = true)]
    pub selinux_defaults: Option<String>,

    /// An unpacked image root, for supplementalGroupsPolicy Merge.
    ///
    /// Its /etc/passwd and /etc/group give the groups that Merge adds.
    #[arg(long, value_name = "DIR", hide_short_help = true)]
    pub image_root: Option<PathBuf>,
}
