//! The container image, as far as it can be checked without a container engine or the
//! base images (neither is on a CI machine): the build context `.containerignore` leaves,
//! the Containerfile's pins, and the entrypoint it installs running.

use crate::common::volsec;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The patterns of an ignore file (comments and blank lines left out).
fn patterns(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

/// `*` within one path component, as the engines' ignore files use it.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.len() >= head.len() + tail.len() && name.starts_with(head) && {
                let rest = &name[head.len()..];
                (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
            }
        }
    }
}

/// Whether `path` (relative, `/`-separated) is left out of the context by `pattern`: the
/// pattern names it or a directory above it, from the context's root, or at any depth
/// with a leading `**/`.
fn ignored(pattern: &str, path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let matches_from = |start: usize, pat: &str| {
        let pat: Vec<&str> = pat.split('/').collect();
        pat.len() <= parts.len() - start && pat.iter().zip(&parts[start..]).all(|(p, n)| glob(p, n))
    };
    match pattern.strip_prefix("**/") {
        Some(rest) => (0..parts.len()).any(|i| matches_from(i, rest)),
        None => matches_from(0, pattern),
    }
}

/// Every file the build context holds: the tree below the project, less what the ignore
/// file leaves out, with its size.
fn context(ignore: &[String]) -> Vec<(String, u64)> {
    fn walk(dir: &Path, base: &Path, ignore: &[String], out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path: PathBuf = entry.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if ignore.iter().any(|p| ignored(p, &rel)) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(&path, base, ignore, out);
            } else {
                out.push((rel, meta.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root(), root(), ignore, &mut out);
    out
}

#[test]
fn the_ignore_rules_match_as_the_engines_do() {
    assert!(ignored("target", "target/release/volsec"));
    assert!(!ignored("target", "crates/core/target/x"));
    assert!(ignored("**/target", "crates/core/target/x"));
    assert!(ignored("*.img", "vol.img"));
    assert!(!ignored("*.img", "fixtures/vol.img.txt"));
    assert!(ignored("benches/results", "benches/results/bench-200k.md"));
    assert!(!ignored("benches/results", "benches/src/results.rs"));
}

/// The context is the sources: no build output, no git history, no saved results, a few MB
/// at most, and podman (`.containerignore`) and docker (`.dockerignore`) send the same.
#[test]
fn the_build_context_is_the_sources_only() {
    let ignore = read(".containerignore");
    assert_eq!(
        ignore,
        read(".dockerignore"),
        "podman and docker must send the same context"
    );
    let files = context(&patterns(&ignore));
    for (path, _) in &files {
        assert!(
            !path.starts_with("target/")
                && !path.starts_with(".git/")
                && !path.contains("/target/"),
            "{path} would be sent as build context"
        );
    }
    let bytes: u64 = files.iter().map(|(_, n)| n).sum();
    assert!(
        bytes < 16 << 20,
        "the build context is {bytes} bytes; it should be the sources"
    );
    // What `cargo build --locked` in the build stage reads is all there.
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "crates/core/Cargo.toml",
        "crates/grpc/Cargo.toml",
        "crates/grpc/src/agent/volsec.proto",
        "crates/grpc/src/csi/csi.proto",
        "benches/Cargo.toml",
        "tests/tests.rs",
    ] {
        assert!(
            files.iter().any(|(p, _)| p == needed),
            "{needed} is missing from the build context"
        );
    }
}

/// The Containerfile builds from pinned images with the lock file, installs the binary
/// where the entrypoint runs it, and that binary answers `--version` and `serve --help`
/// (the image's default command).
#[test]
fn the_containerfile_pins_its_inputs_and_its_entrypoint_runs() {
    let file = read("packaging/Containerfile");
    let froms: Vec<&str> = file
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    for image in &froms {
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            image.contains("@sha256:")
                || (!tag.is_empty() && tag != "latest" && !tag.contains('/')),
            "{image}: a base image is pinned to a tag or a digest"
        );
    }
    assert!(
        file.contains("cargo build --release --locked"),
        "the image builds with the lock file"
    );
    let installed = "/usr/bin/volsec";
    assert!(
        file.contains(&format!("/out{installed}")),
        "installed at {installed}"
    );
    assert!(file.contains(&format!("ENTRYPOINT [\"{installed}\"]")));
    assert!(file.contains("CMD [\"serve\"]"));

    let version = volsec().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("volsec "));
    let serve = volsec().args(["serve", "--help"]).output().unwrap();
    assert!(serve.status.success(), "the image's default command exists");
}
