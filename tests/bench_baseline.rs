//! The baselines are only meaningful if they do what kubelet and go-selinux do: the same
//! final state as volsec, written on every entry.

use crate::common::*;
use volsec_bench::baseline;
use volsec_bench::tree::{self, Shape, Spec};
use volsec_core::ownership::{ChangePolicy, Ownership};

const LABEL: &str = "system_u:object_r:container_file_t:s0:c5,c6";

#[test]
fn kubelet_baseline_reaches_the_same_state_as_volsec() {
    let fs = Mounted::tmpfs();
    let a = fs.subdir("a");
    let b = fs.subdir("b");
    for root in [&a, &b] {
        tree::generate(root, Spec::new(Shape::NodeModules, 2_000), 2).unwrap();
    }
    let own = Ownership {
        fs_group: 3000,
        read_only: false,
        owner: None,
    };
    let count = baseline::kubelet_ownership(&a, own, ChangePolicy::Always).unwrap();
    assert_eq!(count.visited, 2_000);
    assert_eq!(count.written, 2_000, "kubelet writes every entry");
    succeeds(
        volsec()
            .args(["apply", "--fs-group", "3000", "--quiet"])
            .arg(&b),
    );

    let pa = all_paths(&a);
    let pb = all_paths(&b);
    assert_eq!(pa.len(), pb.len());
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!(
            gid_mode(x),
            gid_mode(y),
            "{} vs {}",
            x.display(),
            y.display()
        );
    }
    let skipped = baseline::kubelet_ownership(&a, own, ChangePolicy::OnRootMismatch).unwrap();
    assert_eq!(
        skipped.visited, 1,
        "OnRootMismatch with a matching root looks at the root only"
    );
}

#[test]
fn go_selinux_baseline_labels_everything_and_its_fast_mode_writes_nothing() {
    let fs = Mounted::tmpfs();
    let root = fs.subdir("t");
    tree::generate(&root, Spec::new(Shape::Kubelet, 3_000), 2).unwrap();
    let count = baseline::go_selinux_relabel(&root, LABEL, 0).unwrap();
    assert_eq!((count.visited, count.written), (3_000, 3_000));
    for p in all_paths(&root) {
        let label = xattr::get(&p, "security.selinux").unwrap().unwrap();
        assert_eq!(label, LABEL.as_bytes(), "{}", p.display());
    }
    let ctimes: Vec<i128> = all_paths(&root).iter().map(|p| ctime_ns(p)).collect();
    let fast = baseline::go_selinux_relabel(&root, LABEL, 0).unwrap();
    assert_eq!((fast.visited, fast.written), (3_000, 0));
    let after: Vec<i128> = all_paths(&root).iter().map(|p| ctime_ns(p)).collect();
    assert_eq!(ctimes, after);
}

#[test]
fn chgrp_baseline_changes_every_group() {
    let fs = Mounted::tmpfs();
    let root = fs.subdir("t");
    tree::generate(&root, Spec::new(Shape::Dataset, 2_000), 2).unwrap();
    baseline::chgrp_recursive(&root, 4000).unwrap();
    assert!(all_paths(&root).iter().all(|p| gid_mode(p).0 == 4000));
}

/// rchm, when it is on PATH: asked for kubelet's result, it reaches kubelet's state (group,
/// `0660` on files, `2770` on directories), reports every entry changed, and a second run
/// with the same group changes nothing. Without rchm the test says it did not run.
#[test]
fn rchm_baseline_reaches_kubelets_state_when_rchm_is_installed() {
    let Some(exe) = baseline::find_rchm() else {
        eprintln!(
            "skipped: rchm is not on PATH (cargo install --locked rcp-tools-rchm), so its \
             baseline was not run"
        );
        return;
    };
    let fs = Mounted::tmpfs();
    let a = fs.subdir("a");
    let b = fs.subdir("b");
    for root in [&a, &b] {
        tree::generate(root, Spec::new(Shape::Kubelet, 2_000), 2).unwrap();
    }
    let own = Ownership {
        fs_group: 3000,
        read_only: false,
        owner: None,
    };
    baseline::kubelet_ownership(&a, own, ChangePolicy::Always).unwrap();
    let changed = baseline::rchm_ownership(&exe, &b, 3000, false).unwrap();
    assert_eq!(changed, Some(2_000), "rchm's summary counts every entry");
    let pa = all_paths(&a);
    let pb = all_paths(&b);
    assert_eq!(pa.len(), pb.len());
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!(
            gid_mode(x),
            gid_mode(y),
            "kubelet's {} vs rchm's {}",
            x.display(),
            y.display()
        );
    }
    let again = baseline::rchm_ownership(&exe, &b, 3000, false).unwrap();
    assert_eq!(again, Some(0), "nothing left to change");

    let adaptive = baseline::rchm_ownership(&exe, &b, 3001, true).unwrap();
    assert_eq!(adaptive, Some(2_000));
    assert!(all_paths(&b).iter().all(|p| gid_mode(p).0 == 3001));
}

#[test]
fn rchm_summary_counts_are_read() {
    let summary = "files changed: 10\nsymlinks changed: 2\ndirectories changed: 3\n\
                   files unchanged: 7\nwalltime: 1.2s\n";
    assert_eq!(baseline::rchm_changed(summary), Some(15));
    assert_eq!(baseline::rchm_changed("no summary here"), None);
    assert_eq!(
        baseline::rchm_command_line(true),
        "rchm --group GID --mode 'f:ug+rw d:ug+rwx,g+s' --summary --auto-meta-throttle \
         --max-files-in-flight unlimited TREE"
    );
}
