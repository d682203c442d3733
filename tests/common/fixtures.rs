//! The manifests under `fixtures/` that the plan tests read.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

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
