//! SELinux relabel and the fused ownership + label pass against the go-selinux-style
//! relabel (one path walker, 2 x CPUs workers, `lsetxattr` each path; its fast mode when the
//! root already matches) and the two separate passes run today (kubelet's serial chown walk,
//! then the runtime's relabel), in one run, on the reference tree on a RAM-backed ext4
//! (tmpfs when not root).
//!
//! Labels (and groups) alternate between two values on every "all differ" iteration, so
//! every inode really changes. Under `cargo test` the tree has 2,000 inodes and each case
//! runs once.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use volsec_bench::bed::Target;
use volsec_core::ownership::ChangePolicy;

fn selinux(c: &mut Criterion) {
    let (_scratch, mut bed) = common::reference_tree("selinux");

    let tree = bed.path.clone();
    let mut g = c.benchmark_group("selinux");
    common::configure(&mut g, &bed);

    g.bench_function("relabel-all-differ/volsec", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                drop(
                    bed.volsec(None, Some(Target::Flip), ChangePolicy::Always, 0)
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("relabel-all-differ/go-selinux", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                bed.go_selinux(Target::Flip).unwrap();
            })
        })
    });

    g.bench_function("relabel-all-right/volsec", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                drop(
                    bed.volsec(None, Some(Target::Keep), ChangePolicy::Always, 0)
                        .unwrap(),
                )
            })
        })
    });
    g.bench_function("relabel-all-right/go-selinux-fast-mode", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                bed.go_selinux(Target::Keep).unwrap();
            })
        })
    });

    g.bench_function("fused-all-differ/volsec", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
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
            common::timed(n, &tree, || {
                bed.kubelet(Target::Flip, ChangePolicy::Always).unwrap();
                bed.go_selinux(Target::Flip).unwrap();
            })
        })
    });
    g.finish();
}

criterion_group!(benches, selinux);
criterion_main!(benches);
