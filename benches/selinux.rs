//! SELinux relabel and the fused ownership + label pass against the go-selinux-style
//! relabel (one path walker, 2 x CPUs workers, `lsetxattr` each path; its fast mode when the
//! root already matches) and the two separate passes run today (kubelet's serial chown walk,
//! then the runtime's relabel), in one run, on the reference tree on a RAM-backed ext4
//! (tmpfs when not root).
//!
//! Labels (and groups) alternate between two values on every "all differ" iteration, so
//! every inode really changes. Under `cargo test` the tree has 2,000 inodes and each case
//! runs once.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::time::{Duration, Instant};
use volsec::bench::bed::{Bed, Target};
use volsec::bench::scratch::Scratch;
use volsec::bench::tree::{Shape, Spec};
use volsec::ownership::ChangePolicy;

fn timed(iters: u64, mut pass: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        pass();
        total += start.elapsed();
    }
    total
}

fn selinux(c: &mut Criterion) {
    let inodes = volsec::bench::criterion_tree_inodes();
    let scratch = Scratch::ram_backed(inodes).expect("a scratch filesystem for the tree");
    eprintln!("selinux bench: {inodes} inodes on {}", scratch.description);
    let mut bed = Bed::build(scratch.path(), "tree", Spec::new(Shape::Kubelet, inodes))
        .expect("the benchmark tree");

    let mut g = c.benchmark_group("selinux");
    g.throughput(Throughput::Elements(bed.inodes()))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    g.bench_function("relabel-all-differ/volsec", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                drop(
                    bed.volsec(None, Some(Target::Flip), ChangePolicy::Always, 0)
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("relabel-all-differ/go-selinux", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                bed.go_selinux(Target::Flip).unwrap();
            })
        })
    });

    g.bench_function("relabel-all-right/volsec", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                drop(
                    bed.volsec(None, Some(Target::Keep), ChangePolicy::Always, 0)
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("relabel-all-right/go-selinux-fast-mode", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                bed.go_selinux(Target::Keep).unwrap();
            })
        })
    });

    g.bench_function("fused-all-differ/volsec", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                drop(
                    bed.volsec(
                        Some(Target::Flip),
                        Some(Target::Flip),
                        ChangePolicy::Always,
                        0,
                    )
                    .unwrap(),
                )
            })
        })
    });
    g.bench_function("fused-all-differ/kubelet-serial-then-go-selinux", |b| {
        b.iter_custom(|n| {
            timed(n, || {
                bed.kubelet(Target::Flip, ChangePolicy::Always).unwrap();
                bed.go_selinux(Target::Flip).unwrap();
            })
        })
    });
    g.finish();
}

criterion_group!(benches, selinux);
criterion_main!(benches);
