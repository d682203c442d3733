//! Flags out of bounds are refused before anything runs: exit 2 and one sentence saying
//! what is allowed, never a panic (exit 101), an abort mid-pass (exit 134) or an agent
//! that starts and then refuses every call. And a walk whose threads cannot all be started
//! refuses before it changes anything.

use crate::common::*;

use std::process::Command;

/// One flag out of bounds: the case's name, volsec's arguments (`{vol}` stands for an
/// existing directory, `@REL` for `fixtures/REL`), and what its sentence must say.
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    says: &'static str,
}

const HUGE: &str = "18446744073709551615s";

const CASES: &[Case] = &[
    Case {
        name: "apply --threads 100000",
        args: &[
            "apply",
            "--fs-group",
            "2000",
            "--threads",
            "100000",
            "{vol}",
        ],
        says: "at most 1024 walker threads",
    },
    Case {
        name: "apply --max-threads 100000",
        args: &[
            "apply",
            "--fs-group",
            "2000",
            "--max-threads",
            "100000",
            "{vol}",
        ],
        says: "at most 1024 walker threads",
    },
    Case {
        name: "relabel --threads 100000",
        args: &[
            "relabel",
            "--level",
            "s0:c1,c2",
            "--threads",
            "100000",
            "{vol}",
        ],
        says: "at most 1024 walker threads",
    },
    Case {
        name: "serve --threads 100000",
        args: &["serve", "--threads", "100000"],
        says: "at most 1024 walker threads",
    },
    Case {
        name: "apply --wait beyond a day",
        args: &["apply", "--fs-group", "2000", "--wait", HUGE, "{vol}"],
        says: "at most 1440m (a day)",
    },
    Case {
        name: "serve --shutdown-grace 2^64-1 s",
        args: &["serve", "--shutdown-grace", HUGE],
        says: "at most 1440m (a day)",
    },
    Case {
        name: "serve --progress-interval 2^64-1 s",
        args: &["serve", "--progress-interval", HUGE],
        says: "at most 1440m (a day)",
    },
    Case {
        name: "csi-proxy --shutdown-grace 2^64-1 s",
        args: &[
            "csi-proxy",
            "--driver",
            "/nonexistent.sock",
            "--shutdown-grace",
            HUGE,
        ],
        says: "at most 1440m (a day)",
    },
    Case {
        name: "relabel --level ''",
        args: &["relabel", "--level", "", "{vol}"],
        says: "'--level <LEVEL>': an empty value means nothing",
    },
    Case {
        name: "serve --max-jobs 0",
        args: &["serve", "--max-jobs", "0"],
        says: "0 would run nothing: give at least 1",
    },
    Case {
        name: "csi-proxy --max-passes 0",
        args: &[
            "csi-proxy",
            "--driver",
            "/nonexistent.sock",
            "--max-passes",
            "0",
        ],
        says: "0 would run nothing: give at least 1",
    },
    Case {
        name: "serve --allowed-root /",
        args: &["serve", "--allowed-root", "/"],
        says: "/ cannot be an allowed root",
    },
    Case {
        name: "serve --allowed-root //./",
        args: &["serve", "--allowed-root", "//./"],
        says: "/ cannot be an allowed root",
    },
    Case {
        name: "csi-proxy --allowed-root /",
        args: &[
            "csi-proxy",
            "--driver",
            "/nonexistent.sock",
            "--allowed-root",
            "/",
        ],
        says: "/ cannot be an allowed root",
    },
    Case {
        name: "serve --allowed-root through a symlink",
        args: &["serve", "--allowed-root", "{link}/kubelet"],
        says: "is a symlink, and volume paths are opened without following one",
    },
    Case {
        name: "plan --csi-timeout 0",
        args: &[
            "plan",
            "--pod",
            "@pods/on-root-mismatch.yaml",
            "--volume",
            "data",
            "--csi-socket",
            "/nonexistent.sock",
            "--csi-timeout",
            "0",
        ],
        says: "give more than 0",
    },
    Case {
        name: "plan --csi-timeout -1",
        args: &[
            "plan",
            "--pod",
            "@pods/on-root-mismatch.yaml",
            "--volume",
            "data",
            "--csi-timeout=-1",
        ],
        says: "give more than 0",
    },
];

/// The lines of `stderr` that say something: clap's "For more information" hint and blank
/// lines left out.
fn sentences(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
        .collect()
}

#[test]
fn each_flag_out_of_bounds_is_refused_in_one_sentence() {
    let vol = tempfile::tempdir().unwrap();
    let links = tempfile::tempdir().unwrap();
    let link = links.path().join("link");
    std::os::unix::fs::symlink(links.path(), &link).unwrap();
    let mut wrong = Vec::new();
    for case in CASES {
        let args: Vec<std::ffi::OsString> = fixture_args(case.args)
            .map(|a| {
                let a = a.to_string_lossy().into_owned();
                a.replace("{vol}", &vol.path().to_string_lossy())
                    .replace("{link}", &link.to_string_lossy())
                    .into()
            })
            .collect();
        let mut cmd = volsec();
        cmd.args(&args).env("RUST_LOG", "off");
        let out = run_with_timeout(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        let said = sentences(&err);
        if out.status.code() != Some(2) {
            wrong.push(format!(
                "{}: exit {:?}, not 2: {err}",
                case.name, out.status
            ));
        } else if said.len() != 1 || !said[0].contains(case.says) {
            wrong.push(format!(
                "{}: {err:?} is not one sentence saying {:?}",
                case.name, case.says
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        gid_mode(vol.path()).0,
        0,
        "a refused pass changed the volume"
    );
}

/// Where this machine lets a test cap the processes of a child: a cgroup v1 `pids`
/// hierarchy, or a cgroup v2 one with the `pids` controller given to its children.
fn pids_hierarchy() -> Option<std::path::PathBuf> {
    let v1 = std::path::Path::new("/sys/fs/cgroup/pids");
    if v1.join("cgroup.procs").exists() {
        return Some(v1.to_path_buf());
    }
    let v2 = std::path::Path::new("/sys/fs/cgroup");
    std::fs::read_to_string(v2.join("cgroup.subtree_control"))
        .ok()
        .filter(|c| c.split_whitespace().any(|c| c == "pids"))
        .map(|_| v2.to_path_buf())
}

/// A walk that cannot start all its threads (a pids cgroup allows 8 tasks; 64 are asked)
/// refuses with one sentence, exit 2, before it changes anything: it used to abort (exit
/// 134) once the spawn failed, with part of the volume already changed.
#[test]
fn a_walk_whose_threads_cannot_start_refuses_before_any_change() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    for d in 0..8 {
        mkdir(&vol.join(format!("d{d}")), 0o755);
        for f in 0..50 {
            write_file(&vol.join(format!("d{d}/f{f}")), 0o644);
        }
    }
    let Some(hierarchy) = pids_hierarchy() else {
        panic!("this test caps a child's threads with a pids cgroup, and this machine mounts none (cgroup v1 pids, or v2 with pids in cgroup.subtree_control)");
    };
    let cgroup = hierarchy.join(format!("volsec-test-{}", std::process::id()));
    std::fs::create_dir(&cgroup).unwrap();
    std::fs::write(cgroup.join("pids.max"), "8").unwrap();
    let before = snapshot(&vol);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec \"$@\"",
            cgroup.display()
        ))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_volsec"))
        .args(["apply", "--fs-group", "2000", "--threads", "64", "--quiet"])
        .arg(&vol);
    let out = run_with_timeout(cmd);
    let _ = std::fs::remove_dir(&cgroup);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let said = sentences(&err);
    assert_eq!(said.len(), 1, "one sentence: {err}");
    assert!(said[0].contains("cannot start 64 walker threads"), "{err}");
    assert_eq!(
        snapshot(&vol),
        before,
        "the refused pass changed the volume"
    );
}
