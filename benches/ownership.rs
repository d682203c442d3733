//! The fsGroup ownership pass against kubelet's serial walk and `chgrp -R`, in one run, on
//! the reference tree (1,001 directories, 200,000 empty files, 2,000 symlinks) on a
//! RAM-backed ext4 (tmpfs when not root).
//!
//! Cases: every inode needs a change (the group alternates between two fsGroups on every
//! iteration, whichever implementation runs), nothing needs a change (policy Always), and
//! OnRootMismatch with a matching root. Under `cargo test` the tree has 2,000 inodes and
//! each case runs once.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::time::{Duration, Instant};
use volsec::bench::bed::{Bed, Target};
use volsec::bench::scratch::Scratch;
use volsec::bench::tree::{Shape, Spec};
use volsec::ownership::ChangePolicy;
use volsec::prepare::SkipReason;

/// Times `iters` runs of `pass`, leaving out nothing but the loop itself.
fn timed(iters: u64, mut pass: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        pass();
        total += start.elapsed();
    }
    total
}

fn ownership(c: &mut Criterion) {
    let inodes = volsec::bench::criterion_tree_inodes();
    let scratch = Scratch::ram_backed(inodes).expect("a scratch filesystem for the tree");
    eprintln!(
        "ownership bench: {inodes} inodes on {}",
        scratch.description
    );
    let mut bed = Bed::build(scratch.path(), "tree", Spec::new(Shape::Kubelet, inodes))
        .expect("the benchmark tree");

    let mut g = c.benchmark_group("ownership");
    g.throughput(Throughput::Elements(bed.inodes()))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    g.bench_function("all-change/volsec", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                drop(
                    bed.volsec(Some(Target::Flip), None, ChangePolicy::Always, 0)
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("all-change/kubelet-serial", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                bed.kubelet(Target::Flip, ChangePolicy::Always).unwrap();
            })
        })
    });
    g.bench_function("all-change/chgrp-R", |b| {
        b.iter_custom(|n| timed(n, || bed.chgrp().unwrap()))
    });

    g.bench_function("none-change/volsec", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                drop(
                    bed.volsec(Some(Target::Keep), None, ChangePolicy::Always, 0)
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("none-change/kubelet-serial", |b| {
        b.iter_custom(|n| {
            timed(n, || {
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
            timed(n, || {
                drop(
                    bed.volsec(Some(Target::Keep), None, ChangePolicy::OnRootMismatch, 0)
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("on-root-mismatch/kubelet-serial", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                bed.kubelet(Target::Keep, ChangePolicy::OnRootMismatch)
                    .unwrap();
            })
        })
    });
    g.finish();
}

criterion_group!(benches, ownership);
criterion_main!(benches);
