//! The man pages and shell completions `volsec generate` makes for the .deb: one page per
//! command with every flag its `--help` shows, completion scripts for bash, zsh and fish,
//! and every generated asset the deb metadata names.

use crate::common::{succeeds, volsec};
use std::path::Path;

/// The subcommands `volsec [PARENT...] --help` lists (without `help`).
fn subcommands(parents: &[&str]) -> Vec<String> {
    let help = succeeds(volsec().args(parents).arg("--help")).stdout;
    let help = String::from_utf8(help).unwrap();
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A command's name is indented by two; its wrapped summary further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// The long flags `volsec [COMMAND...] --help` shows.
fn flags(command: &[&str]) -> Vec<String> {
    let help = succeeds(volsec().args(command).arg("--help")).stdout;
    let mut flags: Vec<String> = String::from_utf8(help)
        .unwrap()
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("--") || l.starts_with('-') && l.contains(", --"))
        .filter_map(|l| {
            let at = l.find("--")?;
            let flag = l[at..].split([' ', ',', '=', '\t']).next()?;
            Some(flag.to_string())
        })
        .collect();
    flags.dedup();
    flags
}

/// A man page's text with roff's escaped hyphens plain.
fn page(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.1"));
    let roff = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the man page of {name})", path.display()));
    roff.replace("\\-", "-")
}

#[test]
fn every_command_has_a_man_page_with_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    succeeds(volsec().args(["generate", "man"]).arg(dir.path()));
    let mut commands: Vec<Vec<String>> = vec![vec![]];
    let top = subcommands(&[]);
    assert!(top.contains(&"apply".to_string()), "{top:?}");
    assert!(flags(&["apply"]).contains(&"--fs-group".to_string()));
    for sub in top {
        let nested = subcommands(&[&sub]);
        commands.push(vec![sub.clone()]);
        for n in nested {
            commands.push(vec![sub.clone(), n]);
        }
    }
    let mut missing = Vec::new();
    for command in &commands {
        let words: Vec<&str> = command.iter().map(String::as_str).collect();
        let name = ["volsec"]
            .iter()
            .chain(&words)
            .copied()
            .collect::<Vec<_>>()
            .join("-");
        let text = page(dir.path(), &name);
        for flag in flags(&words) {
            if !text.contains(&flag) {
                missing.push(format!("{name}.1 lacks {flag}"));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    // The long descriptions are there too, not only the summaries.
    let apply = page(dir.path(), "volsec-apply");
    assert!(apply.contains("OnRootMismatch skips the walk"), "{apply}");
    // Hidden commands get none.
    assert!(!dir.path().join("volsec-generate.1").exists());
    assert!(!dir.path().join("volsec-bench-pass.1").exists());
}

#[test]
fn bash_zsh_and_fish_completions_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    succeeds(
        volsec()
            .args(["generate", "completions", "--dir"])
            .arg(dir.path()),
    );
    for file in ["volsec.bash", "_volsec", "volsec.fish"] {
        let script = std::fs::read_to_string(dir.path().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        for word in ["apply", "relabel", "fs-group", "selinux-context"] {
            assert!(script.contains(word), "{file} lacks {word}");
        }
    }
    let bash = succeeds(volsec().args(["generate", "completions", "bash"])).stdout;
    assert_eq!(
        String::from_utf8(bash).unwrap(),
        std::fs::read_to_string(dir.path().join("volsec.bash")).unwrap(),
        "stdout and --dir give the same script"
    );
    let out = volsec().args(["generate", "completions"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a shell or --dir is needed");
}

/// packaging/build-deb generates into target/assets/ what the deb metadata lists from there.
#[test]
fn the_deb_ships_what_build_deb_generates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let deb = cargo.split("[package.metadata.deb]").nth(1).unwrap();
    let script = std::fs::read_to_string(root.join("packaging/build-deb")).unwrap();
    // The profile is release unless VOLSEC_PROFILE says otherwise (CI packs its debug build).
    for step in [
        "profile=${VOLSEC_PROFILE:-release}",
        "cargo build --profile \"$profile\" --locked",
        "\"target/$dir/volsec\" generate man target/assets/man",
        "\"target/$dir/volsec\" generate completions --dir target/assets/completions",
        "cargo deb --no-build --profile \"$profile\"",
    ] {
        assert!(script.contains(step), "packaging/build-deb lacks {step:?}");
    }
    let assets = tempfile::tempdir().unwrap();
    succeeds(
        volsec()
            .args(["generate", "man"])
            .arg(assets.path().join("man")),
    );
    succeeds(
        volsec()
            .args(["generate", "completions", "--dir"])
            .arg(assets.path().join("completions")),
    );
    let sources: Vec<&str> = deb
        .split("[\"target/assets/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    for wanted in [
        "man/*.1",
        "completions/volsec.bash",
        "completions/_volsec",
        "completions/volsec.fish",
    ] {
        assert!(
            sources.contains(&wanted),
            "the deb lacks target/assets/{wanted}: {sources:?}"
        );
    }
    for source in sources {
        match source.strip_suffix("*.1") {
            Some(dir) => assert!(
                std::fs::read_dir(assets.path().join(dir)).unwrap().count() > 1,
                "no man pages for {source}"
            ),
            None => assert!(
                assets.path().join(source).is_file(),
                "volsec generate makes no {source}"
            ),
        }
    }
    for (source, target) in [
        ("man/*.1", "usr/share/man/man1/"),
        (
            "completions/volsec.bash",
            "usr/share/bash-completion/completions/volsec",
        ),
        (
            "completions/_volsec",
            "usr/share/zsh/vendor-completions/_volsec",
        ),
        (
            "completions/volsec.fish",
            "usr/share/fish/vendor_completions.d/volsec.fish",
        ),
    ] {
        assert!(
            deb.contains(&format!("[\"target/assets/{source}\", \"{target}\"")),
            "{source} is not installed to {target}"
        );
    }
}
