//! `volsec generate` (hidden): the man pages and shell completions a package ships, made
//! from the same clap definitions as `--help`, so they never describe other flags.
//! packaging/build-deb runs it on the release binary before `cargo deb`.

use super::exit::{Exit, Refusal};
use clap::ValueEnum as _;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// Write the man pages or the shell completions (for packaging).
///
/// Examples:
///   volsec generate man target/assets/man
///   volsec generate completions --dir target/assets/completions
///   volsec generate completions bash > /usr/share/bash-completion/completions/volsec
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// One man page per command into DIR: volsec.1, volsec-apply.1, volsec-client-prepare.1, ...
    Man {
        /// The directory to write into (created if missing).
        dir: PathBuf,
    },
    /// The completion script of SHELL on stdout, or of every shell into --dir.
    ///
    /// File names in --dir: volsec.bash, _volsec (zsh), volsec.fish, _volsec.ps1 and
    /// volsec.elv.
    Completions {
        #[arg(required_unless_present = "dir", conflicts_with = "dir")]
        shell: Option<Shell>,
        /// Write every shell's script into this directory (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Runs `volsec generate` for `cmd`, the whole command line's definition.
pub fn run(args: Args, mut cmd: clap::Command) -> Result<Exit, Refusal> {
    match args.what {
        What::Man { dir } => {
            create(&dir)?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| Refusal::at(&dir, e))?;
        }
        What::Completions {
            shell: Some(shell), ..
        } => {
            clap_complete::generate(shell, &mut cmd, "volsec", &mut std::io::stdout());
        }
        What::Completions { dir: Some(dir), .. } => {
            create(&dir)?;
            for shell in Shell::value_variants() {
                clap_complete::generate_to(*shell, &mut cmd, "volsec", &dir)
                    .map_err(|e| Refusal::at(&dir, e))?;
            }
        }
        What::Completions { .. } => unreachable!("clap requires SHELL or --dir"),
    }
    Ok(Exit::Done)
}

fn create(dir: &Path) -> Result<(), Refusal> {
    std::fs::create_dir_all(dir).map_err(|e| Refusal::at(dir, e))
}
