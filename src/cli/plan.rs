//! `volsec plan`: kubelet's decisions for one volume of a pod, explained.

use super::exit::{Exit, Refusal};
use super::flags::{PodArgs, RunArgs};
use super::output::Format;
use super::pass::execute;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use volsec_core::plan::gates::GateError;
use volsec_core::plan::identity::ImageAccounts;
use volsec_core::plan::{manifest, DecideError, Input, Inputs, Plan};
use volsec_grpc::node::{self, Csi, NodeError, NodeSpec};

/// The long help: what the answers mean, and examples.
const LONG_HELP: &str = "\
Ownership: none (no fsGroup), delegate (the CSI driver has VOLUME_MOUNT_GROUP and gets fsGroup
as volume_mount_group), unsupported (fsGroupPolicy None, read-only, no fsType, access modes, or
a plugin that never changes ownership), recursive (walk, with fsGroupChangePolicy), or skip
(OnRootMismatch, and --path shows a root that already matches).
SELinux: none, mount_option (kubelet mounts with context=\"...\"), or relabel.
Every answer comes with its reason. Nothing is changed.

Exit status: 0 a plan was made, 2 bad input (one sentence naming the file and the field).

Examples:
  volsec plan --pod pod.yaml --volume data --pv pv.yaml --csidriver driver.yaml
  volsec plan --pod pod.yaml --volume data --pv pv.yaml \\
      --csi-socket /var/lib/kubelet/plugins/ebs.csi.aws.com/csi.sock --selinux-enabled
  volsec plan --pod pod.yaml --volume data --pv pv.yaml --feature-gates SELinuxMount=true \\
      --kubernetes-version 1.33 --output json
  volsec plan --pod pod.yaml --volume data --image-root /run/image/rootfs --path /mnt/data
  volsec apply --pod pod.yaml --volume data --pv pv.yaml /mnt/data";

/// Decide, as kubelet does, who applies fsGroup to a pod's volume and how its SELinux label
/// gets there, and say why.
#[derive(clap::Args, Debug)]
#[command(after_long_help = LONG_HELP)]
#[command(mut_arg("pod", |a| a.required(true)), mut_arg("volume", |a| a.required(true)))]
pub struct Args {
    #[command(flatten)]
    pub pod: PodArgs,

    /// The volume's root directory: with OnRootMismatch, test it as kubelet does and say
    /// `skip` when it already matches. Only read; a symlink anywhere on it is refused.
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,

    /// Output format: a short explanation, or the JSON plan (schema in docs/plan.md).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

pub fn run(args: Args) -> Result<Exit, Refusal> {
    let mut plan = make_plan(&args.pod)?;
    if let Some(path) = &args.path {
        let root = volsec_core::walk::Root::open(path)?;
        plan = plan.with_root(root.stat(), path);
    }
    print_plan(&plan, args.output);
    Ok(Exit::Done)
}

/// `volsec apply --pod ... PATH`: makes the plan and runs what it leaves to volsec.
pub fn apply(args: &PodArgs, path: &Path, run: &RunArgs) -> Result<Exit, Refusal> {
    let plan = make_plan(args)?;
    if run.output == Format::Text {
        emit(&render_text(&plan));
        emit("\n");
    }
    match plan.job() {
        Some(job) => execute(path, &job, run),
        None => {
            match run.output {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "path": path.to_string_lossy(),
                        "path_bytes": volsec_core::walk::lossy::bytes_hex(path),
                        "outcome": "nothing_to_do",
                        "ownership": plan.ownership,
                        "selinux": plan.selinux,
                    }))
                    .expect("a plan serializes")
                ),
                Format::Text => println!(
                    "{}: nothing for volsec to do (see the reasons above)",
                    path.display()
                ),
            }
            Ok(Exit::Done)
        }
    }
}

/// Reads the manifests, gathers the node facts, and decides.
pub fn make_plan(args: &PodArgs) -> Result<Plan, String> {
    let (Some(pod_file), Some(volume)) = (&args.pod, &args.volume) else {
        return Err("--pod FILE and --volume NAME are both needed to make a plan".into());
    };
    let spec = node_spec(args)?;
    let mut node = spec.facts().map_err(|e| node_error(args, &e))?;
    let pod = manifest::load(pod_file).map_err(|e| e.to_string())?;
    let pv = args
        .pv
        .as_deref()
        .map(manifest::load)
        .transpose()
        .map_err(|e| e.to_string())?;
    let driver = args
        .csidriver
        .as_deref()
        .map(manifest::load)
        .transpose()
        .map_err(|e| e.to_string())?;
    let image = match &args.image_root {
        Some(dir) => Some(ImageAccounts::read(dir).map_err(|e| {
            format!(
                "--image-root {}: cannot read the image's accounts: {e}",
                dir.display()
            )
        })?),
        None => None,
    };
    node.image = image;
    let inputs = Inputs {
        pod: &pod,
        volume,
        pv: pv.as_ref(),
        csi_driver: driver.as_ref(),
    };
    node::decide_blocking(&inputs, node, &spec.csi).map_err(|e| node_error(args, &e))
}

/// The node as the flags describe it, for the node-facts gatherer.
fn node_spec(args: &PodArgs) -> Result<NodeSpec, String> {
    let csi = match &args.csi_socket {
        Some(path) => Csi::Socket {
            path: path.clone(),
            timeout: csi_timeout(args)?,
        },
        None => Csi::NotAsked,
    };
    Ok(NodeSpec {
        kubernetes_version: args.kubernetes_version.clone(),
        feature_gates: args
            .feature_gates
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(|e: GateError| e.to_string())?,
        selinux_enabled: args.selinux_enabled,
        selinux_defaults: args.selinux_defaults.clone(),
        csi,
    })
}

/// A refusal of the node facts, naming the flag or the file it is about.
fn node_error(args: &PodArgs, e: &NodeError) -> String {
    match e {
        NodeError::Decide(e) => name_file(args, e),
        NodeError::SelinuxDefaults(_) => format!("--selinux-defaults: {e}"),
        NodeError::OtherDriver { .. } => format!("--csi-socket {e}"),
        // These already name their flag, or the socket.
        NodeError::Version(_) | NodeError::Gates(_) | NodeError::Probe(_) => e.to_string(),
    }
}

fn csi_timeout(args: &PodArgs) -> Result<Duration, String> {
    // The flag's parser allows only more than 0 and at most a day.
    let secs = args.csi_timeout.unwrap_or(5.0);
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("--csi-timeout: {secs} is not a duration in seconds"))
}

fn name_file(args: &PodArgs, e: &DecideError) -> String {
    let file = match e.input {
        Input::Pod => args.pod.as_ref(),
        Input::PersistentVolume => args.pv.as_ref(),
        Input::CsiDriver => args.csidriver.as_ref(),
    };
    match file {
        Some(f) => format!("{}: {e}", f.display()),
        None => e.to_string(),
    }
}

fn print_plan(plan: &Plan, format: Format) {
    match format {
        Format::Json => {
            let json = serde_json::to_string_pretty(plan).expect("a plan serializes");
            emit(&format!("{json}\n"));
        }
        Format::Text => emit(&render_text(plan)),
    }
}

/// Writes to stdout; a closed pipe (`volsec plan | head`) is not an error worth a panic.
fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn render_text(p: &Plan) -> String {
    let mut out = String::new();
    let v = &p.volume;
    let source = match (&v.claim_name, &v.persistent_volume) {
        (Some(c), Some(pv)) => format!("{} {c} -> PersistentVolume {pv}, {}", v.source, v.plugin),
        _ => v.plugin.clone(),
    };
    let driver = v
        .driver
        .as_deref()
        .map(|d| format!(" driver {d}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "pod {}, volume {}, Kubernetes {}, SELinux {}",
        p.pod,
        v.name,
        p.kubernetes_version,
        if p.selinux_enabled {
            "enabled"
        } else {
            "disabled"
        }
    );
    let mut facts = vec![format!("{source}{driver}")];
    if !v.fs_type.is_empty() {
        facts.push(format!("fsType {}", v.fs_type));
    }
    if let Some(modes) = &v.access_modes {
        facts.push(format!("[{}]", modes.join(", ")));
    }
    if v.read_only {
        facts.push("read-only".into());
    }
    wrap(&mut out, "  volume: ", &facts.join(", "));
    let o = &p.ownership;
    let detail = match (&o.volume_mount_group, o.fs_group, o.change_policy) {
        (Some(g), _, _) => format!(" (volume_mount_group \"{g}\")"),
        (None, Some(g), Some(policy)) => format!(
            " (fsGroup {g}, {policy}{})",
            if o.read_only { ", read-only masks" } else { "" }
        ),
        (None, Some(g), None) => format!(" (fsGroup {g})"),
        _ => String::new(),
    };
    let _ = writeln!(out, "ownership: {}{detail}", action_name(&o.action));
    wrap(&mut out, "  why: ", &o.reason);
    let s = &p.selinux;
    let detail = match (&s.mount_option, &s.label) {
        (Some(m), _) => format!(" ({m})"),
        (None, Some(l)) => format!(" ({l})"),
        _ => String::new(),
    };
    let _ = writeln!(out, "selinux: {}{detail}", action_name(&s.action));
    wrap(&mut out, "  why: ", &s.reason);
    let _ = writeln!(out, "containers:");
    for c in &p.containers {
        let show = |v: Option<i64>| v.map_or("(image)".to_string(), |v| v.to_string());
        let groups: Vec<String> = c.groups.iter().map(i64::to_string).collect();
        let mut notes = Vec::new();
        if c.mounts_volume {
            notes.push(if c.mount_read_only {
                "mounts it read-only"
            } else {
                "mounts it"
            });
        }
        if c.privileged {
            notes.push("privileged");
        }
        if !c.image_groups_known {
            notes.push("Merge: the image's /etc/group may add groups (--image-root)");
        }
        let _ = writeln!(
            out,
            "  {} ({}): uid={} gid={} groups={}{}",
            c.name,
            action_name(&c.kind),
            show(c.uid),
            show(c.gid),
            groups.join(","),
            if notes.is_empty() {
                String::new()
            } else {
                format!("  [{}]", notes.join("; "))
            }
        );
    }
    for w in &p.warnings {
        wrap(&mut out, "warning: ", w);
    }
    out
}

/// Appends `text` after `lead`, wrapped at 100 columns, continuation lines indented.
fn wrap(out: &mut String, lead: &str, text: &str) {
    const WIDTH: usize = 100;
    let indent = " ".repeat(lead.len());
    let mut line = lead.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            let _ = writeln!(out, "{line}");
            line = indent.clone();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    let _ = writeln!(out, "{line}");
}

/// The JSON name of an action, for the text output too.
fn action_name<T: serde::Serialize>(action: &T) -> String {
    serde_json::to_value(action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
