//! How many workers a walk keeps busy: chosen by the volume, not by the CPU count.
//!
//! On a local filesystem (ext4, xfs, tmpfs, btrfs, ...) a metadata call costs microseconds
//! of CPU, so the walk runs one worker per online CPU, as it always has. On a volume whose
//! calls wait on a round trip (NFS, SMB/CIFS, CephFS, Lustre, GPFS, 9p, FUSE) the CPU
//! waits too, and what the walk does per second is the calls it keeps in flight divided by
//! the latency (Little's law), up to what the server serves at once. There the walk starts
//! from a number of workers chosen by the filesystem type (`statfs` magic) and a
//! [`Controller`] refines it while the walk runs: it doubles the workers in flight while
//! the throughput rises with them, backs off when it falls, and probes upward now and then.
//! `--threads N` fixes the number whatever the volume; `--max-threads` (and the process's
//! `RLIMIT_NOFILE`) caps what the controller may reach.
//!
//! The controller is pure: it is given the entries completed over a measured interval and
//! whether workers sat idle for want of work (then more workers could not have helped, so
//! the interval says nothing about the limit), so it is tested with a simulated volume.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The upper bound on workers in flight when none is given (`--max-threads`).
pub const DEFAULT_MAX_THREADS: usize = 256;

/// Workers a walk on a network-like volume starts with: a round trip of 0.2 to 2 ms makes
/// a few dozen calls in flight worth it on any such volume, and starting there leaves the
/// controller one or two doublings to find the rest.
pub const NETWORK_START: usize = 64;

/// The most workers any walk starts, `--threads` and `--max-threads` included. Past a few
/// hundred no volume serves more calls at once, and every worker is a thread with its stack
/// and a few directory descriptors: `--threads 100000` ran out of threads halfway through
/// starting them. The command line refuses more; the library clamps.
pub const MAX_WORKERS: usize = 1024;

static MAX_THREADS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_THREADS);

/// Sets the process-wide cap on workers of an adaptive walk (`--max-threads`; 0 restores
/// the default). A fixed `threads` count is not capped.
pub fn set_max_threads(n: usize) {
    let n = if n == 0 { DEFAULT_MAX_THREADS } else { n };
    MAX_THREADS.store(n.min(MAX_WORKERS), Ordering::Relaxed);
}

/// The cap on workers of an adaptive walk: `--max-threads`, and no more than the process's
/// descriptor limit allows (each worker may hold a handful of directory descriptors, and a
/// walk keeps a quarter of the limit in reserve).
pub fn max_threads() -> usize {
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    MAX_THREADS.load(Ordering::Relaxed).min(nofile / 32).max(1)
}

/// The kind of volume, as far as concurrency goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// Calls cost CPU, not waiting: one worker per CPU.
    Local,
    /// Calls wait on a round trip: many workers, adapted while the walk runs.
    Remote(&'static str),
}

/// What `statfs` says of the filesystem, by its magic number.
pub fn volume_kind(f_type: i64) -> VolumeKind {
    // Magic numbers from linux/magic.h and the filesystems' own sources.
    let name = match f_type {
        0x6969 => "nfs",
        0x517b => "smb",
        0xff53_4d42 => "cifs",
        0xfe53_4d42 => "smb2",
        0x00c3_6400 => "ceph",
        0x6573_5546 => "fuse",
        0x0bd0_0bd0 => "lustre",
        0x4750_4653 => "gpfs",
        0x0102_1997 => "9p",
        0x5346_414f | 0x6b41_4653 => "afs",
        0x2003_0528 => "orangefs",
        0x7461_636f => "ocfs2",
        0x0116_1970 => "gfs2",
        _ => return VolumeKind::Local,
    };
    VolumeKind::Remote(name)
}

/// The kind of the volume `fd` is on; local if `fstatfs` fails.
pub fn volume_kind_of(fd: rustix::fd::BorrowedFd<'_>) -> VolumeKind {
    match rustix::fs::fstatfs(fd) {
        // `f_type`'s integer type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        Ok(st) => volume_kind(st.f_type as i64),
        Err(_) => VolumeKind::Local,
    }
}

/// How many workers a walk runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Exactly this many, the whole walk.
    Fixed(usize),
    /// `start` at first, adapted by a [`Controller`] up to `max`.
    Adaptive {
        /// Workers allowed at first.
        start: usize,
        /// The most the controller may allow.
        max: usize,
    },
}

impl Plan {
    /// `threads` when given (`--threads N`), otherwise by the volume: one per CPU on a
    /// local one, adaptive on a network-like one.
    pub fn choose(threads: usize, cpus: usize, kind: VolumeKind, max: usize) -> Plan {
        match (threads, kind) {
            (0, VolumeKind::Local) => Plan::Fixed(cpus.max(1)),
            (0, VolumeKind::Remote(_)) => {
                let max = max.max(cpus).max(1);
                Plan::Adaptive {
                    start: NETWORK_START.clamp(cpus.max(1), max),
                    max,
                }
            }
            (n, _) => Plan::Fixed(n),
        }
    }

    /// The worker threads to start (those over the limit wait until it grows).
    pub fn threads(&self) -> usize {
        match *self {
            Plan::Fixed(n) => n,
            Plan::Adaptive { max, .. } => max,
        }
    }

    /// How many may work at first.
    pub fn start(&self) -> usize {
        match *self {
            Plan::Fixed(n) => n,
            Plan::Adaptive { start, .. } => start,
        }
    }
}

/// How long one measurement lasts: long enough for a few hundred calls at 2 ms each with
/// dozens in flight, short enough to reach hundreds of workers in a fraction of a second.
pub const INTERVAL: Duration = Duration::from_millis(40);

/// A gain smaller than this (relative) does not justify more workers.
const GAIN: f64 = 0.10;
/// A fall bigger than this (relative to the best seen at this limit) means too many.
const FALL: f64 = 0.25;
/// Intervals at a steady limit between two probes upward.
const PROBE_EVERY: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Doubling while throughput rises with the workers.
    Growing,
    /// Holding the best limit found; `probing` when a step up is being tried.
    Steady {
        since: u32,
        probing: Option<(usize, f64)>,
    },
}

/// Chooses the number of workers in flight from measured throughput.
#[derive(Debug, Clone)]
pub struct Controller {
    limit: usize,
    min: usize,
    max: usize,
    phase: Phase,
    /// Throughput at the limit before the last step up, entries per second.
    before: f64,
    /// The best throughput seen at the current limit.
    best_here: f64,
    /// The largest limit used.
    peak: usize,
}

impl Controller {
    /// Starts at `start` workers, never below `min` nor above `max`.
    pub fn new(start: usize, min: usize, max: usize) -> Controller {
        let max = max.max(1);
        let min = min.clamp(1, max);
        let limit = start.clamp(min, max);
        Controller {
            limit,
            min,
            max,
            phase: Phase::Growing,
            before: 0.0,
            best_here: 0.0,
            peak: limit,
        }
    }

    /// Workers allowed in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The largest limit used so far.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// One measured interval: `completed` entries in `elapsed`; `starved` when workers sat
    /// idle for want of work during it. Returns the limit for the next interval.
    pub fn observe(&mut self, completed: u64, elapsed: Duration, starved: bool) -> usize {
        let rate = completed as f64 / elapsed.as_secs_f64().max(1e-6);
        if starved {
            // The tree, not the limit, decided this interval: nothing to learn.
            return self.limit;
        }
        self.best_here = self.best_here.max(rate);
        match self.phase {
            Phase::Growing => {
                if self.before == 0.0 || rate >= self.before * (1.0 + GAIN) {
                    if self.limit >= self.max {
                        self.steady();
                    } else {
                        self.before = rate;
                        self.set(self.limit * 2);
                    }
                } else {
                    // The last doubling did not pay (or made it worse): back to where it
                    // was, which did as well with fewer calls in flight on the server.
                    self.set(self.limit / 2);
                    self.steady();
                }
            }
            Phase::Steady { since, probing } => {
                if let Some((from, rate_before)) = probing {
                    if rate >= rate_before * (1.0 + GAIN / 2.0) {
                        // The step up paid: keep growing from here.
                        self.before = rate;
                        self.phase = Phase::Growing;
                        if self.limit < self.max {
                            self.set(self.limit * 2);
                        }
                    } else {
                        self.set(from);
                        self.steady();
                    }
                } else if rate < self.best_here * (1.0 - FALL) && self.limit > self.min {
                    // Falling at a limit that used to do better: too many for the server now.
                    self.set(self.limit * 3 / 4);
                    self.steady();
                } else if since + 1 >= PROBE_EVERY && self.limit < self.max {
                    let from = self.limit;
                    self.set(self.limit + self.limit.div_ceil(4));
                    self.phase = Phase::Steady {
                        since: 0,
                        probing: Some((from, rate)),
                    };
                } else {
                    self.phase = Phase::Steady {
                        since: since + 1,
                        probing: None,
                    };
                }
            }
        }
        self.limit
    }

    fn set(&mut self, limit: usize) {
        let limit = limit.clamp(self.min, self.max);
        if limit != self.limit {
            self.best_here = 0.0;
        }
        self.limit = limit;
        self.peak = self.peak.max(limit);
    }

    fn steady(&mut self) {
        self.phase = Phase::Steady {
            since: 0,
            probing: None,
        };
    }
}

/// Runs `controller` against a live walk until `done`: every [`INTERVAL`], reads the
/// entries completed so far and whether workers were idle, and publishes the new limit.
pub fn drive(
    mut controller: Controller,
    done: impl Fn() -> bool,
    completed: impl Fn() -> u64,
    idle: impl Fn() -> bool,
    set_limit: impl Fn(usize, usize),
) {
    const TICK: Duration = Duration::from_millis(5);
    let ticks = (INTERVAL.as_millis() / TICK.as_millis()).max(1) as u32;
    let mut last = completed();
    let mut started = std::time::Instant::now();
    let mut idle_ticks = 0u32;
    let mut n = 0u32;
    while !done() {
        std::thread::sleep(TICK);
        n += 1;
        idle_ticks += u32::from(idle());
        if n < ticks {
            continue;
        }
        let now = completed();
        let limit = controller.observe(
            now.saturating_sub(last),
            started.elapsed(),
            idle_ticks * 2 > n,
        );
        set_limit(limit, controller.peak());
        last = now;
        started = std::time::Instant::now();
        idle_ticks = 0;
        n = 0;
    }
}

/// The plan of a walk with `options` below `root`: fixed, or adaptive on a network-like
/// volume when no thread count was given.
pub(super) fn plan_for(options: &super::WalkOptions, root: &super::Root) -> Plan {
    if options.threads > 0 {
        return Plan::Fixed(options.threads.min(MAX_WORKERS));
    }
    let cpus = options.effective_threads();
    Plan::choose(0, cpus, volume_kind_of(root.fd()), max_threads())
}

/// Adapts the walk's limit while it runs (returns at once for a fixed plan), and records
/// the concurrency used in `progress`.
pub(super) fn adapt(plan: Plan, queue: &super::queue::Queue<'_>, progress: &super::Progress) {
    let Plan::Adaptive { start, max } = plan else {
        return;
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    drive(
        Controller::new(start, cpus.min(start), max),
        || queue.is_done(),
        || progress.tally().visited,
        || queue.has_idle(),
        |limit, peak| {
            queue.set_limit(limit);
            progress.set_concurrency(peak);
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A volume whose calls take `latency` each and which serves at most `server` at
    /// once, on a machine whose CPUs do at most `cpu_rate` calls per second whatever the
    /// concurrency: the throughput `workers` in flight get.
    fn simulated(workers: usize, latency: Duration, server: usize, cpu_rate: f64) -> f64 {
        let in_flight = workers.min(server) as f64;
        (in_flight / latency.as_secs_f64()).min(cpu_rate)
    }

    /// Runs the controller for `intervals` intervals against the simulated volume;
    /// returns the limit it ends at.
    fn converge(
        start: usize,
        max: usize,
        latency: Duration,
        server: usize,
        cpu_rate: f64,
        intervals: usize,
    ) -> (usize, Vec<usize>) {
        let mut c = Controller::new(start, 1, max);
        let mut seen = Vec::new();
        for _ in 0..intervals {
            let rate = simulated(c.limit(), latency, server, cpu_rate);
            let completed = (rate * INTERVAL.as_secs_f64()) as u64;
            seen.push(c.observe(completed, INTERVAL, false));
        }
        (c.limit(), seen)
    }

    #[test]
    fn grows_to_hundreds_on_a_slow_volume() {
        // 500 us per call, a server with 256 slots, a CPU that is no limit.
        let (limit, seen) = converge(32, 256, Duration::from_micros(500), 256, 1e9, 40);
        assert_eq!(limit, 256, "{seen:?}");
        // It got there quickly: 32 -> 64 -> 128 -> 256 in three intervals.
        assert_eq!(&seen[..3], &[64, 128, 256]);
    }

    #[test]
    fn stops_where_the_server_stops_serving_more() {
        // A server that serves 48 at once: no more than twice that is kept.
        let (limit, seen) = converge(8, 256, Duration::from_millis(2), 48, 1e9, 60);
        assert!((48..=96).contains(&limit), "{limit} {seen:?}");
        assert!(seen.iter().all(|&l| l <= 128), "{seen:?}");
    }

    #[test]
    fn stays_low_when_the_cpu_is_the_limit() {
        // Local-like: 5 us per call, two CPUs worth 400k calls/s: more workers add nothing.
        let (limit, seen) = converge(2, 256, Duration::from_micros(5), 1 << 20, 400_000.0, 60);
        assert!(limit <= 4, "{limit} {seen:?}");
        assert!(seen.iter().all(|&l| l <= 8), "{seen:?}");
    }

    #[test]
    fn backs_off_when_throughput_falls() {
        let mut c = Controller::new(64, 1, 256);
        let rate = |n: u64| (n as f64 * INTERVAL.as_secs_f64()) as u64;
        // Rising from 64 to 128 pays, 128 to 256 does not: it settles at 128.
        c.observe(rate(100_000), INTERVAL, false);
        assert_eq!(c.limit(), 128);
        c.observe(rate(200_000), INTERVAL, false);
        assert_eq!(c.limit(), 256);
        c.observe(rate(120_000), INTERVAL, false);
        assert_eq!(c.limit(), 128);
        // The server then slows down (others share it): it backs off.
        c.observe(rate(200_000), INTERVAL, false);
        c.observe(rate(100_000), INTERVAL, false);
        assert!(c.limit() < 128, "{}", c.limit());
    }

    #[test]
    fn an_idle_interval_teaches_nothing() {
        let mut c = Controller::new(32, 1, 256);
        assert_eq!(c.observe(10, INTERVAL, true), 32);
        assert_eq!(c.observe(0, INTERVAL, true), 32);
        assert_eq!(c.peak(), 32);
    }

    #[test]
    fn plans_by_volume() {
        assert_eq!(Plan::choose(0, 2, VolumeKind::Local, 256), Plan::Fixed(2));
        assert_eq!(
            Plan::choose(8, 2, VolumeKind::Remote("nfs"), 256),
            Plan::Fixed(8)
        );
        assert_eq!(
            Plan::choose(0, 2, VolumeKind::Remote("nfs"), 256),
            Plan::Adaptive {
                start: NETWORK_START,
                max: 256
            }
        );
        assert_eq!(
            Plan::choose(0, 2, VolumeKind::Remote("fuse"), 16),
            Plan::Adaptive { start: 16, max: 16 }
        );
        assert_eq!(volume_kind(0xef53), VolumeKind::Local);
        assert_eq!(volume_kind(0x0102_1994), VolumeKind::Local);
        assert_eq!(volume_kind(0x6969), VolumeKind::Remote("nfs"));
        assert_eq!(volume_kind(0x6573_5546), VolumeKind::Remote("fuse"));
        assert_eq!(volume_kind(0x00c3_6400), VolumeKind::Remote("ceph"));
        assert_eq!(volume_kind(0xff53_4d42), VolumeKind::Remote("cifs"));
    }
}
