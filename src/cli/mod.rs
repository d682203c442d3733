//! Command-line interface. Each subcommand lives in its own module and only turns flags
//! into library calls and library results into output.

mod apply;
mod bench;
mod client;
mod csi_proxy;
mod exit;
mod flags;
mod generate;
mod mount_option;
mod output;
mod pass;
mod plan;
mod relabel;
mod serve;

use clap::{CommandFactory, Parser, Subcommand};
use exit::{Exit, Refusal};
use std::process::ExitCode;

/// Prepares Kubernetes volumes for the pods that mount them: fsGroup ownership and SELinux
/// labels in one parallel pass that never follows a symlink, with exactly kubelet's results.
#[derive(Parser)]
#[command(
    name = "volsec",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Each subcommand's help is the doc comment of its `Args` (first line: the summary).
    Apply(apply::Args),
    Relabel(relabel::Args),
    MountOption(mount_option::Args),
    Plan(plan::Args),
    Serve(serve::Args),
    Client(client::Args),
    CsiProxy(csi_proxy::Args),
    Bench(bench::Args),
    #[command(hide = true)]
    Generate(generate::Args),
}

/// Whether the command line asks for `--output json` (read before the flags parse, for a
/// refusal of the flags themselves).
fn asked_for_json() -> bool {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    args.iter().any(|a| a == "--output=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--output" && w[1] == "json")
}

impl Command {
    /// The output format the subcommand was asked for: with JSON, a refusal is a JSON
    /// document on stdout too, so every `--output json` run prints exactly one document.
    fn output(&self) -> output::Format {
        match self {
            Command::Apply(a) => a.run.output,
            Command::Relabel(a) => a.run.output,
            Command::MountOption(a) => a.output,
            Command::Plan(a) => a.output,
            Command::Client(a) => a.output,
            Command::Bench(a) => a.output(),
            Command::Serve(_) | Command::CsiProxy(_) | Command::Generate(_) => output::Format::Text,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::from(Exit::Done.code());
            }
            // Refused flags: a caller that asked for JSON still gets one document.
            if asked_for_json() {
                let rendered = e.render().to_string();
                let first = rendered.lines().next().unwrap_or_default();
                let doc = serde_json::json!({
                    "outcome": "refused",
                    "error": first.strip_prefix("error: ").unwrap_or(first),
                });
                println!("{}", serde_json::to_string_pretty(&doc).expect("JSON"));
            }
            return ExitCode::from(Refusal::CODE);
        }
    };
    // The agent sets up its own logging (`--log-format`) and keeps SIGPIPE ignored.
    if !matches!(cli.command, Command::Serve(_) | Command::CsiProxy(_)) {
        // `volsec ... | head` ends quietly. Not for the agent: a client hanging up must never
        // kill it. Nor for `volsec client`: an agent that exits just after a job's result
        // closes the socket under the client's last HTTP/2 frames, and SIGPIPE killed the
        // client (exit 141) with the result unprinted; ignored, the write fails with EPIPE,
        // which the client reports, and its own output ignores a closed stdout.
        if !matches!(cli.command, Command::Client(_)) {
            volsec_core::sys::default_sigpipe();
        }
        output::init_logging();
    }
    let format = cli.command.output();
    let ended = match cli.command {
        Command::Apply(args) => apply::run(args),
        Command::Relabel(args) => relabel::run(args),
        Command::MountOption(args) => mount_option::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Client(args) => client::run(args),
        Command::CsiProxy(args) => csi_proxy::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Generate(args) => generate::run(args, Cli::command()),
    };
    match ended {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(refusal) => {
            refusal.print(format);
            ExitCode::from(Refusal::CODE)
        }
    }
}
