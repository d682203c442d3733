//! The agent's answer time for an OnRootMismatch Prepare that skips, while walks run on
//! other volumes: the call kubelet makes before every mount of an already prepared volume.
//!
//! A real agent (the same `serve` as `volsec serve`, in this process) runs on a temporary socket with two volumes of 50,000 files each
//! walked over and over (fsGroup alternating, so every inode really changes) in its two job
//! slots; meanwhile one client calls Prepare on a third, prepared volume. Criterion reports
//! the mean; p50/p99/max are computed from a separate run of individually timed calls.
//!
//! Run as root (it mounts a tmpfs): `cargo bench --bench agent`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use volsec_bench::scratch::{FsKind, Scratch};
use volsec_grpc::agent::jobs::Limits;
use volsec_grpc::agent::proto::{
    self, prepare_event::Event, volume_agent_client::VolumeAgentClient,
};
use volsec_grpc::agent::server;

type Client = VolumeAgentClient<tonic::transport::Channel>;

/// The agent, stopped when dropped.
struct Agent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    /// Serves on `socket` (bound here, as a test would) from a runtime of its own, so its
    /// threads are not the client's.
    fn start(socket: &Path, allowed_root: &Path) -> Agent {
        let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind the socket");
        let listener = server::Listener::from_std(listener).expect("a Unix socket");
        let config = server::Config {
            allow_uids: vec![0],
            allowed_roots: vec![allowed_root.to_owned()],
            limits: Limits {
                max_jobs: 2,
                threads: 1,
                ..Limits::default()
            },
            metrics_listen: None,
            shutdown_grace: Duration::ZERO,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("the agent's runtime");
            rt.block_on(server::serve(listener, config, async {
                let _ = stopped.await;
            }))
            .expect("the agent serves");
        });
        Agent {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn make_volume(root: &Path, dirs: usize, files: usize) {
    std::fs::create_dir_all(root).unwrap();
    for d in 0..dirs {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..files {
            std::fs::File::create(dir.join(format!("f{f}"))).unwrap();
        }
    }
}

fn request(path: &Path, gid: u32, policy: proto::ChangePolicy) -> proto::PrepareRequest {
    proto::PrepareRequest {
        path: path.display().to_string(),
        fs_group: Some(gid),
        change_policy: policy as i32,
        ..Default::default()
    }
}

async fn prepare(client: &mut Client, req: proto::PrepareRequest) -> proto::Result {
    let mut stream = client.prepare(req).await.expect("prepare").into_inner();
    while let Some(ev) = stream.message().await.expect("event") {
        if let Some(Event::Result(r)) = ev.event {
            return r;
        }
    }
    panic!("no result");
}

/// Keeps both job slots walking until `stop`.
fn keep_walking(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    busy: Vec<PathBuf>,
    stop: Arc<AtomicBool>,
    walks: Arc<AtomicU64>,
) {
    for vol in busy {
        let mut c = client.clone();
        let (stop, walks) = (stop.clone(), walks.clone());
        rt.spawn(async move {
            let mut gid = 3000;
            while !stop.load(Ordering::Relaxed) {
                gid = if gid == 3000 { 3001 } else { 3000 };
                let req = request(&vol, gid, proto::ChangePolicy::Always);
                let Ok(stream) = c.prepare(req).await else {
                    break;
                };
                // Ends with the walk, or when the agent is stopped at the end.
                let mut stream = stream.into_inner();
                while let Ok(Some(_)) = stream.message().await {}
                walks.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn bench(c: &mut Criterion) {
    let fs = Scratch::create(FsKind::Tmpfs, 0, 0).expect("a tmpfs (run as root)");
    let busy: Vec<PathBuf> = (0..2).map(|i| fs.path().join(format!("busy{i}"))).collect();
    for b in &busy {
        make_volume(b, 50, 1000);
    }
    let ready = fs.path().join("ready");
    make_volume(&ready, 2, 10);

    let socket = fs.path().join("volsec.sock");
    let agent = Agent::start(&socket, fs.path());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt
        .block_on(volsec_grpc::agent::client::connect(&socket))
        .expect("connect");
    let skip = request(&ready, 2000, proto::ChangePolicy::OnRootMismatch);
    let first = rt.block_on(prepare(&mut client, skip.clone()));
    assert_eq!(first.outcome(), proto::Outcome::Complete);

    let stop = Arc::new(AtomicBool::new(false));
    let walks = Arc::new(AtomicU64::new(0));
    keep_walking(&rt, &client, busy, stop.clone(), walks.clone());
    std::thread::sleep(Duration::from_millis(300));
    let running = rt
        .block_on(client.list(proto::ListRequest {}))
        .unwrap()
        .into_inner()
        .jobs
        .iter()
        .filter(|j| j.state() == proto::JobState::Running)
        .count();
    assert_eq!(
        running, 2,
        "both slots must be walking while the skip is measured"
    );

    let mut group = c.benchmark_group("agent");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("prepare_on_root_mismatch_skip_while_walking", |b| {
        b.iter(|| {
            let r = rt.block_on(prepare(&mut client, skip.clone()));
            assert_eq!(r.outcome(), proto::Outcome::Skipped);
        })
    });
    group.finish();

    let mut samples = Vec::with_capacity(2000);
    let walks_before = walks.load(Ordering::Relaxed);
    let started = Instant::now();
    for _ in 0..2000 {
        let t = Instant::now();
        let r = rt.block_on(prepare(&mut client, skip.clone()));
        samples.push(t.elapsed());
        assert_eq!(r.outcome(), proto::Outcome::Skipped);
    }
    let spent = started.elapsed();
    let walked = walks.load(Ordering::Relaxed) - walks_before;
    stop.store(true, Ordering::Relaxed);
    samples.sort();
    println!(
        "OnRootMismatch skip while 2 walks run ({} calls over {:.1} s, {walked} walks of 50,051 inodes finished meanwhile): p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        spent.as_secs_f64(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples.last().unwrap(),
    );
    drop(agent);
}

criterion_group!(benches, bench);
criterion_main!(benches);
