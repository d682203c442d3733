//! `volsec mount-option`: the `-o context=` option a label-mounted volume gets.

use super::exit::{Exit, Refusal};
use super::flags::LabelArgs;
use super::output::Format;
use volsec_core::selinux;

/// The long help (`--help`), after the summary and the options.
const LONG_HELP: &str = "\
Print the mount option that gives a whole volume an SELinux label without any relabel,
exactly as kubelet formats it: context=\"user:role:type:range\" (the label in double
quotes so the commas between categories survive the splitting of mount options).

The label is given whole (--context) or as seLinuxOptions (--level, --user) completed
with the node's container file defaults. With SELinux enabled, the kernel checks it and
its canonical form is printed.

Examples:
  volsec mount-option --level s0:c123,c456
    context=\"system_u:object_r:container_file_t:s0:c123,c456\"
  mount -o \"$(volsec mount-option --level s0:c1,c2)\" /dev/vdb /mnt/vol
  volsec mount-option --context system_u:object_r:container_file_t:s0:c2,c1 --output json";

/// Print the `-o context=` mount option for an SELinux label, exactly as kubelet formats it.
#[derive(clap::Args, Debug)]
#[command(after_long_help = LONG_HELP)]
pub struct Args {
    #[command(flatten)]
    pub label: LabelArgs,

    /// Output format: the bare option, or JSON with the label and the option.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

#[derive(serde::Serialize)]
struct Answer {
    label: String,
    mount_option: String,
}

pub fn run(args: Args) -> Result<Exit, Refusal> {
    let label = args
        .label
        .label()
        .and_then(|l| selinux::checked_label(l).map_err(|e| e.to_string()))?;
    let answer = Answer {
        label: label.to_string(),
        mount_option: selinux::mount_option(&label),
    };
    match args.output {
        Format::Text => println!("{}", answer.mount_option),
        Format::Json => println!(
            "{}",
            serde_json::to_string(&answer).expect("a JSON object of strings")
        ),
    }
    Ok(Exit::Done)
}
