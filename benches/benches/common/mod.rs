//! What the criterion benches share: the reference tree on its scratch filesystem, the
//! group settings, and the timing of passes that each leave the tree in a new state.

use criterion::{measurement::WallTime, BenchmarkGroup, SamplingMode, Throughput};
use std::path::Path;
use std::time::{Duration, Instant};
use volsec_bench::bed::Bed;
use volsec_bench::scratch::Scratch;
use volsec_bench::tree::{Shape, Spec};

/// Total time of `iters` passes over `tree`, for `iter_custom`: each pass is timed alone,
/// after the one before has been written back ([`volsec_bench::bed::settle`]), so nothing
/// between passes is counted.
pub fn timed(iters: u64, tree: &Path, mut pass: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        volsec_bench::bed::settle(tree).expect("syncfs of the bench tree");
        let start = Instant::now();
        pass();
        total += start.elapsed();
    }
    total
}

/// The reference tree (the `kubelet` shape) on a RAM-backed scratch filesystem.
/// The scratch must outlive the bed: it unmounts when dropped.
pub fn reference_tree(bench: &str) -> (Scratch, Bed) {
    let inodes = volsec_bench::criterion_tree_inodes();
    let scratch = Scratch::ram_backed(inodes, volsec_bench::scratch::IMAGE_BYTES)
        .expect("a scratch filesystem for the tree");
    eprintln!("{bench} bench: {inodes} inodes on {}", scratch.description);
    let bed = Bed::build(scratch.path(), "tree", Spec::new(Shape::Kubelet, inodes))
        .expect("the benchmark tree");
    (scratch, bed)
}

/// Few, flat samples: each one is a whole pass over the tree.
pub fn configure(g: &mut BenchmarkGroup<'_, WallTime>, bed: &Bed) {
    g.throughput(Throughput::Elements(bed.inodes()))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
}
