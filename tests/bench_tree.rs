//! The benchmark tree generator: deterministic layouts with exact inode counts, and trees
//! on disk that match their plans.

use crate::common::*;
use volsec_bench::tree::{self, Shape, Spec};

#[test]
fn every_shape_has_exactly_the_inodes_asked_for() {
    for shape in Shape::ALL {
        for inodes in [10, 2_000, 10_000, 203_001] {
            let plan = tree::plan(Spec::new(shape, inodes)).unwrap();
            assert_eq!(plan.counts().inodes(), inodes, "{shape} at {inodes}");
        }
    }
}

#[test]
fn the_same_spec_gives_the_same_tree_and_another_seed_another() {
    for shape in Shape::ALL {
        let a = tree::plan(Spec::new(shape, 50_000)).unwrap();
        let b = tree::plan(Spec::new(shape, 50_000)).unwrap();
        assert_eq!(a, b, "{shape}");
    }
    let spec = Spec::new(Shape::NodeModules, 50_000);
    let other = Spec { seed: 7, ..spec };
    assert_ne!(tree::plan(spec).unwrap(), tree::plan(other).unwrap());
}

#[test]
fn the_kubelet_shape_is_the_reference_tree() {
    let c = tree::plan(Spec::new(Shape::Kubelet, 203_001))
        .unwrap()
        .counts();
    assert_eq!((c.dirs, c.files, c.symlinks), (1_001, 200_000, 2_000));
}

#[test]
fn shapes_have_their_character() {
    let dataset = tree::plan(Spec::new(Shape::Dataset, 100_000)).unwrap();
    let per_dir = dataset.counts().files / (dataset.dirs.len() as u64 - 1);
    assert!(
        (1_200..=1_300).contains(&per_dir),
        "{per_dir} files per class"
    );
    let flat = tree::plan(Spec::new(Shape::Flat, 100_000)).unwrap();
    assert_eq!(flat.dirs.len(), 1);
    let deep = tree::plan(Spec::new(Shape::Deep, 30_000)).unwrap();
    assert_eq!(depth(&deep), 128);
    let nm = tree::plan(Spec::new(Shape::NodeModules, 30_000)).unwrap();
    let c = nm.counts();
    assert!(c.dirs * 4 > c.files, "many tiny dirs: {c:?}");
    assert!(depth(&nm) >= 8, "nested packages");
}

fn depth(plan: &tree::Plan) -> usize {
    let mut depth = vec![0usize; plan.dirs.len()];
    for (i, d) in plan.dirs.iter().enumerate().skip(1) {
        depth[i] = depth[d.parent as usize] + 1;
    }
    depth.into_iter().max().unwrap()
}

#[test]
fn out_of_range_sizes_are_refused_with_the_range() {
    let err = tree::plan(Spec::new(Shape::Flat, 3)).unwrap_err();
    assert!(err.to_string().contains("give 10 to"), "{err}");
}

#[test]
fn a_built_tree_matches_its_plan_and_set_state_reaches_every_inode() {
    let fs = Mounted::tmpfs();
    for shape in Shape::ALL {
        let root = fs.subdir(shape.as_str());
        let counts = tree::generate(&root, Spec::new(shape, 3_000), 2).unwrap();
        let paths = all_paths(&root);
        assert_eq!(paths.len() as u64, counts.inodes(), "{shape}");
        let links = paths.iter().filter(|p| p.is_symlink()).count() as u64;
        assert_eq!(links, counts.symlinks, "{shape}");

        let visited = tree::set_state(
            &root,
            4242,
            Some("system_u:object_r:container_file_t:s0:c1,c2"),
            2,
        )
        .unwrap();
        assert_eq!(visited, counts.inodes(), "{shape}");
        for p in &paths {
            assert_eq!(gid_mode(p).0, 4242, "{}", p.display());
            let label = xattr::get(p, "security.selinux").unwrap().unwrap();
            assert!(
                label.starts_with(b"system_u:object_r:container_file_t:s0:c1,c2"),
                "{}",
                p.display()
            );
        }
    }
}
