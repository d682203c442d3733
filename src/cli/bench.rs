//! `volsec bench`.

/// Not implemented yet.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> u8 {
    eprintln!("volsec: bench is not implemented yet");
    super::EXIT_REFUSED
}
