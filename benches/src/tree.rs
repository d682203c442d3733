//! Deterministic benchmark trees, sized by inode count.
//!
//! A benchmark is only comparable across builds and machines if every run walks the same
//! tree. The generator is therefore a pure function of (shape, inode count, seed): a tiny
//! xorshift drives every random choice, so the same arguments always give the same
//! directories, names and entry counts, and [`plan`] can be checked without touching a disk.
//!
//! The shapes are the ones that bound a recursive pass in the field:
//! - `kubelet`: the tree the project's reference numbers use (1,001 directories, 200,000
//!   empty files, 2,000 symlinks at 203,001 inodes; scaled proportionally);
//! - `dataset`: an image dataset, ImageNet-like (about 1,281 files in each of few
//!   directories);
//! - `deep`: narrow chains 128 directories deep (7 files per level). Deep enough that a
//!   path-based walk pays for resolving long paths on every call (its cost per inode grows
//!   with the depth: at 1,000 levels kubelet's walk is 12x slower per inode than on the
//!   `kubelet` shape, too slow for a 5-minute suite); the walker's own depth limits are
//!   tested with 10,000-level trees elsewhere;
//! - `node-modules`: nested packages, many tiny directories;
//! - `flat`: one directory holding every entry (`flat:1000000` in `volsec bench run` gives
//!   the directory of 1,000,000 entries).
//!
//! Creation is fast because it never resolves a path: directories are made with `mkdirat`
//! under their parent's descriptor, files are created empty with one `mknodat(S_IFREG)` each (no open, no close), and the
//! files of different directories are created by several threads at once. Building only
//! makes the layout; [`set_state`] then brings every inode to one group and label.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, CWD};
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

/// The shape of a generated tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// The reference tree: 1,001 directories, 200,000 empty files, 2,000 symlinks.
    Kubelet,
    /// An image dataset: about 1,281 files per directory.
    Dataset,
    /// Chains 128 directories deep with 7 files per level.
    Deep,
    /// Nested packages: many tiny directories.
    NodeModules,
    /// One directory with every entry in it.
    Flat,
}

impl Shape {
    pub const ALL: [Shape; 5] = [
        Shape::Kubelet,
        Shape::Dataset,
        Shape::Deep,
        Shape::NodeModules,
        Shape::Flat,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Shape::Kubelet => "kubelet",
            Shape::Dataset => "dataset",
            Shape::Deep => "deep",
            Shape::NodeModules => "node-modules",
            Shape::Flat => "flat",
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown tree shape {0:?}: expected kubelet, dataset, deep, node-modules or flat")]
pub struct ParseShapeError(pub String);

impl FromStr for Shape {
    type Err = ParseShapeError;
    fn from_str(s: &str) -> Result<Shape, ParseShapeError> {
        Shape::ALL
            .into_iter()
            .find(|shape| shape.as_str() == s)
            .ok_or_else(|| ParseShapeError(s.to_string()))
    }
}

/// Smallest and largest tree the generator accepts, in inodes (the root included).
pub const MIN_INODES: u64 = 10;
pub const MAX_INODES: u64 = 20_000_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    pub shape: Shape,
    /// Total inodes, the root directory included.
    pub inodes: u64,
    pub seed: u64,
}

impl Spec {
    pub const DEFAULT_SEED: u64 = 0x766f_6c73_6563;

    pub fn new(shape: Shape, inodes: u64) -> Spec {
        Spec {
            shape,
            inodes,
            seed: Spec::DEFAULT_SEED,
        }
    }
}

/// One directory of a plan. Its files are named `f0`, `f1`, ... and its symlinks `l0`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirPlan {
    /// Index of the parent in [`Plan::dirs`]; the root is its own parent (index 0).
    pub parent: u32,
    pub name: String,
    pub files: u32,
    pub symlinks: u32,
}

/// The complete layout of a tree; directories in pre-order (a parent before its children).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub spec: Spec,
    pub dirs: Vec<DirPlan>,
}

/// How many inodes of each kind a tree holds (the root counted as a directory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
}

impl Counts {
    pub fn inodes(&self) -> u64 {
        self.dirs + self.files + self.symlinks
    }
}

impl Plan {
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            dirs: self.dirs.len() as u64,
            ..Counts::default()
        };
        for d in &self.dirs {
            c.files += d.files as u64;
            c.symlinks += d.symlinks as u64;
        }
        c
    }
}

/// xorshift64*: tiny, fast, and the same on every platform, which is all a layout needs.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("tree size {0} inodes is out of range: give {MIN_INODES} to {MAX_INODES}")]
pub struct SizeError(pub u64);

/// The layout of `spec`, exactly `spec.inodes` inodes.
pub fn plan(spec: Spec) -> Result<Plan, SizeError> {
    if !(MIN_INODES..=MAX_INODES).contains(&spec.inodes) {
        return Err(SizeError(spec.inodes));
    }
    let mut rng = XorShift::new(spec.seed);
    let mut b = Builder::new(spec);
    match spec.shape {
        Shape::Kubelet => kubelet(&mut b),
        Shape::Dataset => dataset(&mut b, &mut rng),
        Shape::Deep => deep(&mut b),
        Shape::NodeModules => node_modules(&mut b, &mut rng),
        Shape::Flat => b.dirs[0].files = (spec.inodes - 1) as u32,
    }
    Ok(Plan { spec, dirs: b.dirs })
}

/// Accumulates directories while keeping count of the inode budget.
struct Builder {
    dirs: Vec<DirPlan>,
    left: u64,
}

impl Builder {
    fn new(spec: Spec) -> Builder {
        Builder {
            dirs: vec![DirPlan {
                parent: 0,
                name: String::new(),
                files: 0,
                symlinks: 0,
            }],
            left: spec.inodes - 1,
        }
    }

    /// Adds a directory under `parent` if the budget allows; returns its index.
    fn dir(&mut self, parent: u32, name: String) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.dirs.push(DirPlan {
            parent,
            name,
            files: 0,
            symlinks: 0,
        });
        Some(self.dirs.len() as u32 - 1)
    }

    /// Adds up to `n` files to `dir`, within the budget.
    fn files(&mut self, dir: u32, n: u64) {
        let n = n.min(self.left);
        self.left -= n;
        self.dirs[dir as usize].files += n as u32;
    }

    fn symlinks(&mut self, dir: u32, n: u64) {
        let n = n.min(self.left);
        self.left -= n;
        self.dirs[dir as usize].symlinks += n as u32;
    }
}

/// 1,000 directories under the root with the files and symlinks dealt evenly, in the
/// reference proportions (1,000 : 200,000 : 2,000).
fn kubelet(b: &mut Builder) {
    let total = b.left;
    let subdirs = ((total * 1000 + 101_500) / 203_000).max(1);
    let symlinks = total * 2000 / 203_000;
    let ids: Vec<u32> = (0..subdirs)
        .filter_map(|i| b.dir(0, format!("d{i:04}")))
        .collect();
    let files = b.left - symlinks;
    deal(b, &ids, files, Builder::files);
    deal(b, &ids, b.left, Builder::symlinks);
}

fn deal(b: &mut Builder, ids: &[u32], n: u64, add: fn(&mut Builder, u32, u64)) {
    let per = n / ids.len() as u64;
    let extra = n % ids.len() as u64;
    for (i, &id) in ids.iter().enumerate() {
        add(b, id, per + u64::from((i as u64) < extra));
    }
}

/// Class directories of 1,262 to 1,300 images each, until the budget is spent.
fn dataset(b: &mut Builder, rng: &mut XorShift) {
    let mut class = 0;
    while let Some(id) = b.dir(0, format!("n{:08}", 1_440_764 + class * 7)) {
        let n = rng.range(1262, 1300);
        b.files(id, n);
        class += 1;
    }
}

/// Chains of up to 128 levels; each level is one directory `d` holding 7 files.
fn deep(b: &mut Builder) {
    const DEPTH: u32 = 128;
    let mut chain = 0;
    'chains: while b.left > 0 {
        let Some(mut at) = b.dir(0, format!("chain{chain}")) else {
            break;
        };
        for _ in 1..DEPTH {
            b.files(at, 7);
            match b.dir(at, "d".to_string()) {
                Some(next) => at = next,
                None => break 'chains,
            }
        }
        b.files(at, 7);
        chain += 1;
    }
}

/// Top-level packages, each with a few files, a `lib` directory and sometimes its own
/// `node_modules` of smaller packages, nested up to 6 levels.
fn node_modules(b: &mut Builder, rng: &mut XorShift) {
    let Some(top) = b.dir(0, "node_modules".to_string()) else {
        return;
    };
    let mut n = 0;
    while b.left > 0 {
        package(b, rng, top, format!("pkg{n}"), 0);
        n += 1;
    }
}

fn package(b: &mut Builder, rng: &mut XorShift, parent: u32, name: String, depth: u32) {
    let Some(pkg) = b.dir(parent, name) else {
        return;
    };
    b.files(pkg, rng.range(2, 6));
    if let Some(lib) = b.dir(pkg, "lib".to_string()) {
        b.files(lib, rng.range(1, 8));
        if rng.range(0, 3) == 0 {
            if let Some(sub) = b.dir(lib, "internal".to_string()) {
                b.files(sub, rng.range(1, 4));
            }
        }
    }
    if depth < 6 && rng.range(0, 2) == 0 {
        if let Some(nm) = b.dir(pkg, "node_modules".to_string()) {
            b.symlinks(nm, rng.range(0, 1));
            for i in 0..rng.range(1, 3) {
                package(b, rng, nm, format!("dep{i}"), depth + 1);
            }
        }
    }
}

/// Creates `plan` under `root`, an existing empty directory, with `threads` threads (0: one
/// per CPU). Files are empty, mode 0644; directories 0755; symlinks point at a sibling file
/// (or at `/etc/passwd` in a directory without files: nothing may ever follow them).
pub fn build(root: &Path, plan: &Plan, threads: usize) -> io::Result<Counts> {
    volsec_core::sys::raise_fd_limit();
    let root_fd = rustix::fs::openat(
        CWD,
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_context(root, "open", e.into()))?;
    let threads = effective(threads);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(OwnedFd, Fill)>(threads * 4);
    let rx = Mutex::new(rx);
    let first_error: Mutex<Option<io::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let job = rx.lock().expect("queue").recv();
                let Ok((fd, part)) = job else {
                    return;
                };
                if let Err(e) = fill(&fd, &part) {
                    first_error.lock().expect("error slot").get_or_insert(e);
                }
            });
        }
        let made = make_dirs(root_fd, plan, |fd, d| {
            for part in Fill::parts(d) {
                let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)?;
                tx.send((dup, part))
                    .map_err(|_| io::Error::other("tree builder threads stopped"))?;
            }
            Ok(())
        });
        drop(tx);
        if let Err(e) = made {
            first_error.lock().expect("error slot").get_or_insert(e);
        }
    });
    match first_error.into_inner().expect("error slot") {
        Some(e) => Err(io_context(root, "build tree", e)),
        None => Ok(plan.counts()),
    }
}

/// Makes every directory in pre-order, keeping the chain of open ancestors on a stack, and
/// hands each one (with its descriptor) to `each`.
fn make_dirs(
    root: OwnedFd,
    plan: &Plan,
    mut each: impl FnMut(&OwnedFd, &DirPlan) -> io::Result<()>,
) -> io::Result<()> {
    let mut stack: Vec<(u32, OwnedFd)> = vec![(0, root)];
    each(&stack[0].1, &plan.dirs[0])?;
    for (i, d) in plan.dirs.iter().enumerate().skip(1) {
        while stack.last().map(|(id, _)| *id) != Some(d.parent) {
            stack.pop();
        }
        let parent = &stack.last().expect("the root stays on the stack").1;
        rustix::fs::mkdirat(parent, d.name.as_str(), Mode::from_raw_mode(0o755))?;
        let fd = rustix::fs::openat(
            parent,
            d.name.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        each(&fd, d)?;
        stack.push((i as u32, fd));
    }
    Ok(())
}

/// A share of one directory's entries for one builder thread: a big directory (the flat
/// shape is one directory) is filled by every thread at once.
struct Fill {
    /// All the files of the directory (symlinks point at them).
    files: u32,
    /// The files this share creates.
    range: std::ops::Range<u32>,
    /// Symlinks this share creates (the last share makes them all).
    symlinks: u32,
}

impl Fill {
    const FILES_PER_PART: u32 = 8192;

    fn parts(d: &DirPlan) -> Vec<Fill> {
        let mut parts: Vec<Fill> = (0..d.files)
            .step_by(Fill::FILES_PER_PART as usize)
            .map(|start| Fill {
                files: d.files,
                range: start..(start + Fill::FILES_PER_PART).min(d.files),
                symlinks: 0,
            })
            .collect();
        match parts.last_mut() {
            Some(last) => last.symlinks = d.symlinks,
            None if d.symlinks > 0 => parts.push(Fill {
                files: 0,
                range: 0..0,
                symlinks: d.symlinks,
            }),
            None => {}
        }
        parts
    }
}

fn fill(dir: &OwnedFd, part: &Fill) -> io::Result<()> {
    let (files, symlinks) = (part.files, part.symlinks);
    let mut name = String::with_capacity(16);
    for i in part.range.clone() {
        numbered(&mut name, 'f', i);
        // One call per file: mknodat(S_IFREG) creates it empty without an open and a close.
        rustix::fs::mknodat(
            dir,
            name.as_str(),
            rustix::fs::FileType::RegularFile,
            Mode::from_raw_mode(0o644),
            0,
        )?;
    }
    for i in 0..symlinks {
        numbered(&mut name, 'l', i);
        let target = if files > 0 {
            format!("f{}", i % files)
        } else {
            "/etc/passwd".to_string()
        };
        rustix::fs::symlinkat(target.as_str(), dir.as_fd(), name.as_str())?;
    }
    Ok(())
}

fn numbered(buf: &mut String, prefix: char, i: u32) {
    use std::fmt::Write;
    buf.clear();
    buf.push(prefix);
    let _ = write!(buf, "{i}");
}

/// Builds the tree of `spec` under `root`. See [`build`].
pub fn generate(root: &Path, spec: Spec, threads: usize) -> io::Result<Counts> {
    let plan = plan(spec).map_err(io::Error::other)?;
    build(root, &plan, threads)
}

/// Brings every inode of the tree at `root` (the root included) to group `gid` with
/// kubelet's read-write masks and, if given, the SELinux label `label`, using the engine's
/// parallel pass (only what differs is written). Used between benchmark iterations to put
/// a tree in a known state quickly.
pub fn set_state(root: &Path, gid: u32, label: Option<&str>, threads: usize) -> io::Result<u64> {
    use volsec_core::ownership::Ownership;
    use volsec_core::prepare::{prepare, Job, Options};
    let label = label
        .map(volsec_core::selinux::Context::parse)
        .transpose()
        .map_err(io::Error::other)?;
    let job = Job {
        ownership: Some(Ownership {
            fs_group: gid,
            read_only: false,
            owner: None,
        }),
        label,
        ..Job::default()
    };
    let mut options = Options::default();
    options.walk.threads = threads;
    let progress = volsec_core::walk::Progress::new(10);
    let report =
        prepare(root, &job, &options, &progress, &Default::default()).map_err(io::Error::other)?;
    if !report.succeeded() {
        let first = report.errors.first().map(ToString::to_string);
        return Err(io::Error::other(format!(
            "{}: could not set the tree state: {} entries failed ({})",
            root.display(),
            report.tally.failed,
            first.unwrap_or_default()
        )));
    }
    Ok(report.tally.visited)
}

fn effective(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

fn io_context(path: &Path, what: &str, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {what}: {err}", path.display()))
}
