//! What `volsec csi-proxy` costs and saves, with its baselines measured in the same run:
//!
//! 1. forwarding: 10,000 `NodeGetCapabilities` and 10,000 `NodeGetVolumeStats`, each
//!    straight to the fake driver and through the proxy (one connection each, calls timed
//!    one by one): the p99 the proxy adds;
//! 2. `NodePublishVolume` of the reference tree (203,001 inodes) where every inode needs a
//!    change (the fsGroup alternates), through the proxy (driver bind mount + the pass),
//!    against the core pass on the same tree (what `volsec apply` runs);
//! 3. `NodePublishVolume` of a prepared volume with OnRootMismatch through the proxy,
//!    against the driver's own publish: the milliseconds the proxy adds to a mount.
//!
//! The driver is the fake CSI driver (a real gRPC server; its publish is a real bind mount),
//! the proxy the same `serve` as `volsec csi-proxy`, on its own runtime in this process.
//! Under `cargo test --all-targets` (criterion's test mode) the tree has 2,000 inodes and
//! 200 calls are timed. Run as root: `cargo bench -p volsec-bench --bench csi_proxy`.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::Bytes;
use tonic::transport::Channel;
use volsec_bench::bed::Target;
use volsec_core::ownership::ChangePolicy;
use volsec_grpc::agent::jobs::Limits;
use volsec_grpc::csi::fake_driver::{Behaviour, FakeDriver, Publish};
use volsec_grpc::proxy::codec::RawCodec;
use volsec_grpc::proxy::wire::{access_mode, encode};
use volsec_grpc::proxy::{self, FsGroupPolicy, Settings};

const CAPS: &str = "/csi.v1.Node/NodeGetCapabilities";
const STATS: &str = "/csi.v1.Node/NodeGetVolumeStats";
const PUBLISH: &str = "/csi.v1.Node/NodePublishVolume";
const UNPUBLISH: &str = "/csi.v1.Node/NodeUnpublishVolume";

/// A server on a runtime (and threads) of its own, stopped when dropped.
struct Served {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn driver(socket: &Path, tree: &Path) -> Served {
        let (socket, tree) = (socket.to_owned(), tree.to_owned());
        Served::spawn(move |stopped| async move {
            let driver = FakeDriver::start(
                &socket,
                Behaviour {
                    name: Some("bench.csi.volsec.io".into()),
                    publish: Publish::BindMount(tree),
                    ..Default::default()
                },
            )
            .expect("the fake driver");
            let _ = stopped.await;
            driver.stop().await;
        })
    }

    fn proxy(socket: &Path, driver: &Path, allowed_root: &Path) -> Served {
        let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind");
        let listener = proxy::Listener::from_std(listener).expect("a Unix socket");
        let config = proxy::Config {
            driver: driver.to_owned(),
            settings: Settings {
                fs_group_policy: FsGroupPolicy::File,
                change_policy: ChangePolicy::Always,
                selinux_relabel: false,
            },
            allowed_roots: vec![allowed_root.to_owned()],
            allow_uids: vec![0],
            limits: Limits::default(),
            metrics_listen: None,
            shutdown_grace: Duration::ZERO,
            driver_timeout: Duration::from_secs(120),
        };
        Served::spawn(move |stopped| async move {
            proxy::serve(listener, config, async {
                let _ = stopped.await;
            })
            .await
            .expect("the proxy serves");
        })
    }

    fn spawn<F, Fut>(body: F) -> Served
    where
        F: FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(body(stopped));
        });
        Served {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn connect(socket: &Path) -> Channel {
    let until = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < until,
            "{} never appeared",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    volsec_grpc::proxy::driver::channel(socket)
}

/// One unary call with kubelet's 2-minute deadline.
async fn call(channel: &Channel, method: &'static str, payload: &Bytes) -> Bytes {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let mut request = tonic::Request::new(payload.clone());
    request.set_timeout(Duration::from_secs(120));
    grpc.unary(request, PathAndQuery::from_static(method), RawCodec)
        .await
        .unwrap_or_else(|s| panic!("{method}: {s:?}"))
        .into_inner()
}

fn publish_request(target: &Path, fs_group: Option<u32>, on_root_mismatch: bool) -> Bytes {
    let group = fs_group.map(|g| g.to_string());
    let mut m = encode::Message::new()
        .string(1, "pv-bench")
        .string(4, &target.to_string_lossy())
        .message(
            5,
            encode::mount_capability(
                "ext4",
                &[],
                group.as_deref(),
                access_mode::SINGLE_NODE_WRITER,
            ),
        );
    if on_root_mismatch {
        m = m.map_entry(8, "volsec.io/fs-group-change-policy", "OnRootMismatch");
    }
    Bytes::from(m.into_bytes())
}

fn unpublish_request(target: &Path) -> Bytes {
    Bytes::from(
        encode::Message::new()
            .string(1, "pv-bench")
            .string(2, &target.to_string_lossy())
            .into_bytes(),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    percentile(&v, 0.5)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bench(c: &mut Criterion) {
    let measuring = volsec_bench::criterion_tree_inodes() > 100_000;
    let calls = if measuring { 10_000 } else { 200 };
    let rounds = if measuring { 7 } else { 1 };
    let (scratch, mut bed) = common::reference_tree("csi_proxy");
    let sockets = scratch.path().join("plugins");
    std::fs::create_dir_all(&sockets).expect("a socket directory");
    let driver_sock = sockets.join("csi.sock.internal");
    let proxy_sock = sockets.join("csi.sock");
    // kubelet's pods directory on the same scratch filesystem: the proxy's allowed root.
    let kubelet: PathBuf = scratch.path().join("kubelet");
    let pv_dir = kubelet.join("pods/uid/volumes/kubernetes.io~csi/pv-bench");
    std::fs::create_dir_all(&pv_dir).expect("the pod's volume directory");
    let target = pv_dir.join("mount");

    let _driver = Served::driver(&driver_sock, &bed.path);
    let _proxy = Served::proxy(&proxy_sock, &driver_sock, &kubelet);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let direct = rt.block_on(connect(&driver_sock));
    let proxied = rt.block_on(connect(&proxy_sock));
    let empty = Bytes::new();
    let stats = Bytes::from(
        encode::Message::new()
            .string(1, "pv-bench")
            .string(2, &target.to_string_lossy())
            .into_bytes(),
    );

    // 1. Forwarding overhead.
    let mut g = c.benchmark_group("csi_proxy/forward");
    g.measurement_time(Duration::from_secs(if measuring { 3 } else { 1 }));
    for (name, method, payload) in [
        ("NodeGetCapabilities", CAPS, &empty),
        ("NodeGetVolumeStats", STATS, &stats),
    ] {
        g.bench_function(format!("{name}/direct"), |b| {
            b.iter(|| rt.block_on(call(&direct, method, payload)))
        });
        g.bench_function(format!("{name}/proxy"), |b| {
            b.iter(|| rt.block_on(call(&proxied, method, payload)))
        });
    }
    g.finish();
    let mut summary = Vec::new();
    for (name, method, payload) in [
        ("NodeGetCapabilities", CAPS, &empty),
        ("NodeGetVolumeStats", STATS, &stats),
    ] {
        let mut times = [Vec::with_capacity(calls), Vec::with_capacity(calls)];
        // Interleaved, so both see the same machine.
        for _ in 0..calls {
            for (i, ch) in [&direct, &proxied].into_iter().enumerate() {
                let t = Instant::now();
                rt.block_on(call(ch, method, payload));
                times[i].push(t.elapsed());
            }
        }
        for t in &mut times {
            t.sort();
        }
        let p = |i: usize, q: f64| percentile(&times[i], q);
        summary.push(format!(
            "{name} x{calls}: direct p50 {:.3} ms p99 {:.3} ms; proxy p50 {:.3} ms p99 {:.3} ms; added p99 {:.3} ms",
            ms(p(0, 0.5)),
            ms(p(0, 0.99)),
            ms(p(1, 0.5)),
            ms(p(1, 0.99)),
            ms(p(1, 0.99)) - ms(p(0, 0.99)),
        ));
    }

    // 2. A publish where every inode changes, against the core pass on the same tree.
    let publish_all = |bed: &mut volsec_bench::bed::Bed| {
        let gid = bed.gid(Target::Flip);
        bed.settle().expect("settle");
        let req = publish_request(&target, Some(gid), false);
        let t = Instant::now();
        rt.block_on(call(&proxied, PUBLISH, &req));
        let spent = t.elapsed();
        rt.block_on(call(&proxied, UNPUBLISH, &unpublish_request(&target)));
        spent
    };
    let core_pass = |bed: &mut volsec_bench::bed::Bed| {
        bed.settle().expect("settle");
        let t = Instant::now();
        bed.volsec(Some(Target::Flip), None, ChangePolicy::Always, 0)
            .expect("the core pass");
        t.elapsed()
    };
    let tree = bed.path.clone();
    let mut g = c.benchmark_group("csi_proxy/publish-all-change");
    common::configure(&mut g, &bed);
    g.bench_function("proxy", |b| {
        b.iter_custom(|n| (0..n).map(|_| publish_all(&mut bed)).sum())
    });
    g.bench_function("core-pass", |b| {
        b.iter_custom(|n| {
            common::timed(n, &tree, || {
                drop(
                    bed.volsec(Some(Target::Flip), None, ChangePolicy::Always, 0)
                        .expect("the core pass"),
                )
            })
        })
    });
    g.finish();
    let (mut via_proxy, mut via_core) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        via_proxy.push(publish_all(&mut bed));
        via_core.push(core_pass(&mut bed));
    }
    let (p, k) = (median(via_proxy), median(via_core));
    summary.push(format!(
        "NodePublishVolume, {} inodes all changed: proxy (bind mount + pass) median {:.1} ms; core pass median {:.1} ms; ratio {:.3}",
        bed.inodes(),
        ms(p),
        ms(k),
        p.as_secs_f64() / k.as_secs_f64()
    ));

    // 3. OnRootMismatch publish of a prepared volume, against the driver's own publish.
    let gid = bed.gid(Target::Keep);
    let skip = publish_request(&target, Some(gid), true);
    let plain = publish_request(&target, None, false);
    let publish_on = |ch: &Channel, req: &Bytes| {
        let t = Instant::now();
        rt.block_on(call(ch, PUBLISH, req));
        let spent = t.elapsed();
        rt.block_on(call(ch, UNPUBLISH, &unpublish_request(&target)));
        spent
    };
    let mut g = c.benchmark_group("csi_proxy/publish-on-root-mismatch");
    g.measurement_time(Duration::from_secs(if measuring { 3 } else { 1 }));
    g.bench_function("proxy", |b| {
        b.iter_custom(|n| (0..n).map(|_| publish_on(&proxied, &skip)).sum())
    });
    g.bench_function("driver-only", |b| {
        b.iter_custom(|n| (0..n).map(|_| publish_on(&direct, &plain)).sum())
    });
    g.finish();
    let n = if measuring { 500 } else { 20 };
    let (mut via_proxy, mut alone) = (Vec::new(), Vec::new());
    for _ in 0..n {
        via_proxy.push(publish_on(&proxied, &skip));
        alone.push(publish_on(&direct, &plain));
    }
    let (p, d) = (median(via_proxy), median(alone));
    summary.push(format!(
        "NodePublishVolume OnRootMismatch of a prepared volume x{n}: proxy median {:.3} ms; driver only median {:.3} ms; added {:.3} ms",
        ms(p),
        ms(d),
        ms(p) - ms(d)
    ));
    assert_eq!(
        volsec_grpc::proxy::wire::has_node_capability(
            &rt.block_on(call(&proxied, CAPS, &empty)),
            volsec_grpc::proxy::wire::VOLUME_MOUNT_GROUP
        ),
        Ok(true)
    );
    println!("\ncsi-proxy summary ({}):", scratch.description);
    for line in summary {
        println!("  {line}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
