//! The fsGroup ownership pass against kubelet's serial walk and `chgrp -R`, in one run, on
//! the reference tree (1,001 directories, 200,000 empty files, 2,000 symlinks) on a
//! RAM-backed ext4 (tmpfs when not root).
//!
//! Cases: every inode needs a change (the group alternates between two fsGroups on every
//! iteration, whichever implementation runs), nothing needs a change (policy Always), and
//! OnRootMismatch with a matching root. Under `cargo test` the tree has 2,000 inodes and
//! each case runs once.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use volsec_bench::bed::Target;
use volsec_core::ownership::ChangePolicy;
use volsec_core::prepare::SkipReason;

fn ownership(c: &mut Criterion) {
    let (_scratch, mut bed) = common::reference_tree("ownership");

    let tree = bed.path.clone();
    let mut g = c.benchmark_group("ownership");
    common::configure(&mut g, &bed);

    g.bench_function("all-change/volsec", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                drop(
                    bed.volsec(Some(Target::Flip), None, ChangePolicy::Always, 0)
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("all-change/kubelet-serial", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                bed.kubelet(Target::Flip, ChangePolicy::Always).unwrap();
            })
        })
    });
    g.bench_function("all-change/chgrp-R", |b| {
        b.iter_custom(|n| common::timed(n, &tree, || bed.chgrp().unwrap()))
    });

    g.bench_function("none-change/volsec", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                drop(
                    bed.volsec(Some(Target::Keep), None, ChangePolicy::Always, 0)
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("none-change/kubelet-serial", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                bed.kubelet(Target::Keep, ChangePolicy::Always).unwrap();
            })
        })
    });

    let skipped = bed
        .volsec(Some(Target::Keep), None, ChangePolicy::OnRootMismatch, 0)
        .unwrap()
        .skipped_reason;
    assert_eq!(
        skipped,
        Some(SkipReason::OnRootMismatch),
        "the root must match for this case"
    );
    g.bench_function("on-root-mismatch/volsec", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                drop(
                    bed.volsec(Some(Target::Keep), None, ChangePolicy::OnRootMismatch, 0)
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("on-root-mismatch/kubelet-serial", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                bed.kubelet(Target::Keep, ChangePolicy::OnRootMismatch)
                    .unwrap();
            })
        })
    });
    g.finish();
}

criterion_group!(benches, ownership);
criterion_main!(benches);
