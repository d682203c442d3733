//! The manifests under `fixtures/` that the plan tests read.

use super::volsec;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `fixtures/REL` in the source tree.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Command-line arguments where `@REL` stands for the path of `fixtures/REL`.
pub fn fixture_args<'a>(args: &'a [&'a str]) -> impl Iterator<Item = OsString> + 'a {
    args.iter().map(|a| match a.strip_prefix('@') {
        Some(rel) => fixture(rel).into_os_string(),
        None => a.into(),
    })
}

/// `volsec SUBCOMMAND --volume VOLUME --pod fixtures/POD ARGS...`, where `@REL` in ARGS
/// stands for `fixtures/REL`: the command the plan tests start (add a volume path for
/// `apply`).
pub fn volsec_pod(subcommand: &str, pod: &str, volume: &str, args: &[&str]) -> Command {
    let mut cmd = volsec();
    cmd.args([subcommand, "--volume", volume, "--pod"])
        .arg(fixture(pod))
        .args(fixture_args(args));
    cmd
}
