//! `volsec serve`.

/// Not implemented yet.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> u8 {
    eprintln!("volsec: serve is not implemented yet");
    super::EXIT_REFUSED
}
