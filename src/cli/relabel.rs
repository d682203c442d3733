//! `volsec relabel`.

/// Not implemented yet.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> u8 {
    eprintln!("volsec: relabel is not implemented yet");
    super::EXIT_REFUSED
}
