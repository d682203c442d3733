//! Bad input to `volsec plan` and `volsec apply --pod`: one sentence naming the file, the
//! field and what was expected; exit status 2; nothing walked.

use crate::common::{fixture_args, volsec, volsec_pod};

/// Runs `volsec plan` with `args` (`@rel` is a fixture path) for the case `name`; asserts
/// exit 2 and one line on stderr, and returns it.
fn refused(name: &str, args: &[&str]) -> String {
    let out = volsec()
        .arg("plan")
        .args(fixture_args(args))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{name}: stderr: {err}");
    assert!(out.stdout.is_empty(), "{name}: no plan on bad input");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{name}: one sentence: {err}"
    );
    err
}

/// One bad input: the case's name, `volsec plan`'s arguments (`@REL`: `fixtures/REL`), and
/// what its one sentence must say.
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    says: &'static [&'static str],
}

const POD: &str = "--pod";
const VOLUME: &str = "--volume";

const CASES: &[Case] = &[
    Case {
        name: "malformed YAML names the file and the line",
        args: &[POD, "@bad/malformed.yaml", VOLUME, "data"],
        says: &[
            "bad/malformed.yaml: malformed YAML or JSON in document 1",
            "line 8",
        ],
    },
    Case {
        name: "a field of the wrong type",
        args: &[POD, "@bad/wrong-type.yaml", VOLUME, "data"],
        says: &["bad/wrong-type.yaml: document 1: not a valid Pod", "fsGroup"],
    },
    Case {
        name: "a PersistentVolume given as the pod",
        args: &[POD, "@pv/rwo.yaml", VOLUME, "data"],
        says: &[
            "pv/rwo.yaml: field kind: expected a Pod, found PersistentVolume (document 1)",
        ],
    },
    Case {
        name: "a pod given as the PersistentVolume",
        args: &[
            POD,
            "@pods/on-root-mismatch.yaml",
            VOLUME,
            "data",
            "--pv",
            "@pods/security-context.yaml",
        ],
        says: &["security-context.yaml: field kind: expected a PersistentVolume, found Pod"],
    },
    Case {
        name: "a PersistentVolume given as the CSIDriver",
        args: &[
            POD,
            "@pods/on-root-mismatch.yaml",
            VOLUME,
            "data",
            "--pv",
            "@pv/rwo.yaml",
            "--csidriver",
            "@pv/rwo.yaml",
        ],
        says: &["field kind: expected a CSIDriver, found PersistentVolume"],
    },
    Case {
        name: "a missing volume lists the pod's volumes",
        args: &[POD, "@pods/selinux-level.yaml", VOLUME, "date"],
        says: &["selinux-level.yaml: field spec.volumes: the pod has no volume named \"date\"; its volumes are data, config"],
    },
    Case {
        name: "a claim needs its PersistentVolume",
        args: &[POD, "@pods/on-root-mismatch.yaml", VOLUME, "data"],
        says: &["field spec.volumes[0] (data): it uses the PersistentVolumeClaim \"data-claim\"; give the PersistentVolume bound to it with --pv FILE"],
    },
    Case {
        name: "a PersistentVolume bound to another claim",
        args: &[
            POD,
            "@pods/on-root-mismatch.yaml",
            VOLUME,
            "data",
            "--pv",
            "@pv/other-claim.yaml",
        ],
        says: &["pv/other-claim.yaml: field spec.claimRef.name: the PersistentVolume \"pv-other\" is bound to claim \"someone-else\""],
    },
    Case {
        name: "a CSIDriver object for another driver",
        args: &[
            POD,
            "@pods/on-root-mismatch.yaml",
            VOLUME,
            "data",
            "--pv",
            "@pv/rwo.yaml",
            "--csidriver",
            "@csidriver/other-driver.yaml",
        ],
        says: &["csidriver/other-driver.yaml: field metadata.name: the CSIDriver is \"nfs.csi.k8s.io\", but volume \"data\" uses driver \"block.csi.example.com\""],
    },
    Case {
        name: "an unknown feature gate",
        args: &[
            POD,
            "@pods/security-context.yaml",
            VOLUME,
            "sec-ctx-vol",
            "--feature-gates",
            "SELinuxMount=true,SELinuxMagic=true",
        ],
        says: &["--feature-gates: unknown feature gate \"SELinuxMagic\"; volsec knows SELinuxMountReadWriteOncePod, SELinuxChangePolicy, SELinuxMount, SupplementalGroupsPolicy"],
    },
    Case {
        name: "a feature gate without a value",
        args: &[
            POD,
            "@pods/security-context.yaml",
            VOLUME,
            "sec-ctx-vol",
            "--feature-gates",
            "SELinuxMount",
        ],
        says: &["\"SELinuxMount\" is not NAME=true or NAME=false"],
    },
    Case {
        name: "a feature gate the release does not have",
        args: &[
            POD,
            "@pods/security-context.yaml",
            VOLUME,
            "sec-ctx-vol",
            "--feature-gates",
            "SELinuxMount=true",
            "--kubernetes-version",
            "1.29",
        ],
        says: &["SELinuxMount does not exist in Kubernetes 1.29; it appeared in 1.30"],
    },
    Case {
        name: "a GA feature gate turned off",
        args: &[
            POD,
            "@pods/security-context.yaml",
            VOLUME,
            "sec-ctx-vol",
            "--feature-gates",
            "SELinuxMountReadWriteOncePod=false",
        ],
        says: &["GA and locked to true in Kubernetes 1.36"],
    },
    Case {
        name: "an unknown release",
        args: &[
            POD,
            "@pods/security-context.yaml",
            VOLUME,
            "sec-ctx-vol",
            "--kubernetes-version",
            "1.40",
        ],
        says: &["--kubernetes-version: \"1.40\" is not a release volsec knows; expected 1.25 to 1.36"],
    },
    Case {
        name: "an unknown change policy",
        args: &[POD, "@bad/bad-change-policy.yaml", VOLUME, "data"],
        says: &["field spec.securityContext.fsGroupChangePolicy: \"Sometimes\" is not a policy; expected Always or OnRootMismatch"],
    },
    Case {
        name: "a missing file",
        args: &[POD, "/nonexistent/pod.yaml", VOLUME, "data"],
        says: &["/nonexistent/pod.yaml: cannot read the Pod"],
    },
    Case {
        name: "a bad seLinuxOptions.level",
        args: &[
            POD,
            "@bad/bad-level.yaml",
            VOLUME,
            "data",
            "--selinux-enabled",
        ],
        says: &[
            "field spec.containers[\"app\"].securityContext.seLinuxOptions: seLinuxOptions.level",
            "expected a level such as s0:c123,c456",
        ],
    },
    Case {
        name: "an unknown seLinuxChangePolicy",
        args: &[POD, "@bad/bad-selinux-change-policy.yaml", VOLUME, "data"],
        says: &["field spec.securityContext.seLinuxChangePolicy: \"Sometimes\" is not a policy; expected MountOption or Recursive"],
    },
    Case {
        name: "an unknown fsGroupPolicy",
        args: &[
            POD,
            "@pods/on-root-mismatch.yaml",
            VOLUME,
            "data",
            "--pv",
            "@pv/rwo.yaml",
            "--csidriver",
            "@bad/bad-fs-group-policy.yaml",
        ],
        says: &["bad/bad-fs-group-policy.yaml: field spec.fsGroupPolicy: \"Files\" is not a policy; expected File, None or ReadWriteOnceWithFSType"],
    },
];

#[test]
fn each_bad_input_is_one_sentence_naming_what_is_wrong() {
    let mut wrong = Vec::new();
    for case in CASES {
        let e = refused(case.name, case.args);
        for says in case.says {
            if !e.contains(says) {
                wrong.push(format!("{}: {e:?} lacks {says:?}", case.name));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn apply_with_bad_input_walks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let before = (
        crate::common::gid_mode(dir.path()),
        crate::common::gid_mode(&file),
    );
    let out = volsec_pod("apply", "pods/on-root-mismatch.yaml", "data", &["--quiet"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("give the PersistentVolume bound to it with --pv FILE"),
        "{err}"
    );
    assert_eq!(
        (
            crate::common::gid_mode(dir.path()),
            crate::common::gid_mode(&file)
        ),
        before
    );
}
