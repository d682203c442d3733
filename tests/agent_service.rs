//! End-to-end: the real `volsec serve` process on a temporary socket, volumes in tmpfs,
//! called over gRPC by many concurrent clients, by the `volsec client` command, by another
//! uid, and scraped over HTTP.

use crate::common::*;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;
use volsec_grpc::agent::proto::{
    self, prepare_event::Event, volume_agent_client::VolumeAgentClient,
};

type Client = VolumeAgentClient<tonic::transport::Channel>;

/// A running `volsec serve`, killed when dropped.
pub(crate) struct Agent {
    pub(crate) child: Child,
    dir: tempfile::TempDir,
    pub(crate) metrics: u16,
}

impl Agent {
    pub(crate) fn start(allowed_root: &Path, extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = free_port();
        let socket = dir.path().join("volsec.sock");
        let child = volsec()
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--allowed-root")
            .arg(allowed_root)
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn volsec serve");
        let agent = Agent {
            child,
            dir,
            metrics,
        };
        agent.wait_ready();
        agent
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("volsec.sock")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.socket().exists() && http_get(self.metrics, "/readyz").0 == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("volsec serve did not become ready within 20 s");
    }

    pub(crate) async fn client(&self) -> Client {
        volsec_grpc::agent::client::connect(&self.socket())
            .await
            .expect("connect to the agent")
    }

    /// A bare gRPC channel over the socket, for calls the volsec client does not make.
    async fn channel(&self) -> tonic::transport::Channel {
        let socket = self.socket();
        tonic::transport::Endpoint::from_static("http://volsec.agent")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .expect("a channel to the agent")
    }

    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .expect("SIGTERM");
        wait_timeout(&mut self.child, Duration::from_secs(20))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "volsec serve did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .unwrap()
        .port()
}

/// The value of one sample line in a Prometheus text exposition.
fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name_and_labels} in:\n{metrics}"))
        .trim()
        .parse()
        .expect("a number")
}

fn sample_or_zero(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

/// A volume of `dirs` directories of `files` files each.
/// Agent flags that make a walk slow enough to be caught in the middle: one thread, and
/// progress every 50 ms.
const ONE_SLOW_WALKER: [&str; 4] = ["--threads", "1", "--progress-interval", "50ms"];

/// `big` under `fs`: 50,101 inodes, a walk that [`ONE_SLOW_WALKER`] takes long enough to
/// interrupt.
fn big_volume(fs: &Mounted) -> PathBuf {
    let vol = fs.path().join("big");
    make_volume(&vol, 100, 500);
    vol
}

fn make_volume(root: &Path, dirs: usize, files: usize) {
    mkdir(root, 0o755);
    for d in 0..dirs {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir(&dir).expect("mkdir");
        for f in 0..files {
            std::fs::File::create(dir.join(format!("f{f}"))).expect("create");
        }
    }
}

fn fs_group(path: &Path, gid: u32, policy: proto::ChangePolicy) -> proto::PrepareRequest {
    proto::PrepareRequest {
        path: path.display().to_string(),
        fs_group: Some(gid),
        change_policy: policy as i32,
        ..Default::default()
    }
}

/// Calls Prepare and collects every event up to the result.
async fn prepare(
    client: &mut Client,
    req: proto::PrepareRequest,
) -> Result<Vec<proto::PrepareEvent>, tonic::Status> {
    let mut stream = client.prepare(req).await?.into_inner();
    let mut events = Vec::new();
    while let Some(ev) = stream.message().await? {
        events.push(ev);
    }
    Ok(events)
}

fn result_of(events: &[proto::PrepareEvent]) -> &proto::Result {
    match events.last().and_then(|e| e.event.as_ref()) {
        Some(Event::Result(r)) => r,
        other => panic!("the stream did not end with a result: {other:?}"),
    }
}

fn accepted_of(events: &[proto::PrepareEvent]) -> &proto::Accepted {
    match events.first().and_then(|e| e.event.as_ref()) {
        Some(Event::Accepted(a)) => a,
        other => panic!("the stream did not start with accepted: {other:?}"),
    }
}

/// Waits for the first progress event with something visited; returns the stream.
async fn walk_started(
    client: &mut Client,
    req: proto::PrepareRequest,
) -> (String, tonic::Streaming<proto::PrepareEvent>) {
    let mut stream = client.prepare(req).await.expect("prepare").into_inner();
    while let Some(ev) = stream.message().await.expect("event") {
        if let Some(Event::Progress(p)) = &ev.event {
            if p.visited > 0 {
                return (ev.job_id, stream);
            }
        }
        if let Some(Event::Result(r)) = &ev.event {
            panic!("the pass ended before it could be interrupted ({r:?}): make the volume bigger");
        }
    }
    panic!("the stream ended without progress");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_join_queue_and_walk_each_volume_once() {
    let fs = Mounted::tmpfs();
    // Two large volumes hold both job slots, so the 200 calls below all arrive while their
    // jobs are still queued: joins are then certain, not a race.
    let blockers: Vec<PathBuf> = (0..2)
        .map(|i| fs.path().join(format!("blocker{i}")))
        .collect();
    for b in &blockers {
        make_volume(b, 20, 1000);
    }
    let volumes: Vec<PathBuf> = (0..20)
        .map(|i| fs.path().join(format!("vol{i:02}")))
        .collect();
    for v in &volumes {
        make_volume(v, 3, 20);
    }
    let agent = Agent::start(fs.path(), &["--max-jobs", "2", "--threads", "1"]);
    let client = agent.client().await;

    let mut calls = Vec::new();
    for b in &blockers {
        let mut c = client.clone();
        let req = fs_group(b, 1000, proto::ChangePolicy::Always);
        calls.push(tokio::spawn(async move { prepare(&mut c, req).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let mut volume_calls = Vec::new();
    for i in 0..200 {
        let mut c = client.clone();
        let v = volumes[i % volumes.len()].clone();
        let req = fs_group(&v, 2000, proto::ChangePolicy::Always);
        volume_calls.push((v, tokio::spawn(async move { prepare(&mut c, req).await })));
    }
    // Once all 202 calls are in (joined or new), other parameters on a busy path queue
    // behind its job.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = http_get(agent.metrics, "/metrics");
        let calls = ["new", "joined"]
            .iter()
            .map(|d| {
                sample_or_zero(
                    &m,
                    &format!("volsec_prepare_calls_total{{disposition=\"{d}\"}}"),
                )
            })
            .sum::<f64>();
        if calls >= 202.0 {
            break;
        }
        assert!(Instant::now() < deadline, "only {calls} calls arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut c = client.clone();
    let other = fs_group(&volumes[0], 3000, proto::ChangePolicy::Always);
    let queued = tokio::spawn(async move { prepare(&mut c, other).await });

    // The slot limit holds while all of this is in flight.
    let mut c = client.clone();
    let mut max_running = 0;
    let mut saw_queued = false;
    for _ in 0..20 {
        let jobs = c
            .list(proto::ListRequest {})
            .await
            .unwrap()
            .into_inner()
            .jobs;
        let running = jobs
            .iter()
            .filter(|j| j.state() == proto::JobState::Running)
            .count();
        max_running = max_running.max(running);
        saw_queued |= jobs.iter().any(|j| j.state() == proto::JobState::Queued);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        max_running <= 2,
        "{max_running} jobs ran at once with --max-jobs 2"
    );
    assert!(saw_queued, "no job was ever seen queued");

    let mut job_of_volume = std::collections::HashMap::new();
    for (v, call) in volume_calls {
        let events = call.await.unwrap().expect("prepare");
        let r = result_of(&events);
        assert_eq!(
            r.outcome(),
            proto::Outcome::Complete,
            "{}: {r:?}",
            v.display()
        );
        let id = events[0].job_id.clone();
        assert!(events.iter().all(|e| e.job_id == id));
        let first = job_of_volume.entry(v.clone()).or_insert(id.clone());
        assert_eq!(*first, id, "{}: calls did not join one job", v.display());
    }
    for call in calls {
        let events = call.await.unwrap().expect("blocker");
        assert_eq!(result_of(&events).outcome(), proto::Outcome::Complete);
    }
    let events = queued.await.unwrap().expect("queued call");
    assert!(!accepted_of(&events).joined);
    assert_eq!(accepted_of(&events).queued_behind, 1);
    assert_eq!(result_of(&events).outcome(), proto::Outcome::Complete);
    let elapsed = started.elapsed();

    let distinct: std::collections::HashSet<_> = job_of_volume.values().collect();
    assert_eq!(distinct.len(), 20, "each volume has its own job");
    for v in &volumes[1..] {
        for p in all_paths(v) {
            assert_eq!(gid_mode(&p).0, 2000, "{}", p.display());
        }
    }
    assert_eq!(
        gid_mode(&volumes[0]).0,
        3000,
        "the queued job ran after the joined one"
    );

    let (_, metrics) = http_get(agent.metrics, "/metrics");
    // 2 blockers + 20 volumes + the queued job on vol00: each walked once.
    assert_eq!(sample(&metrics, "volsec_walks_total"), 23.0);
    assert_eq!(
        sample(
            &metrics,
            "volsec_prepare_calls_total{disposition=\"joined\"}"
        ),
        180.0
    );
    assert_eq!(
        sample(&metrics, "volsec_prepare_calls_total{disposition=\"new\"}"),
        23.0
    );
    assert_eq!(sample(&metrics, "volsec_jobs_running"), 0.0);
    assert_eq!(sample(&metrics, "volsec_jobs_queued"), 0.0);
    eprintln!("200 calls over 20 volumes (behind 2 blockers) done in {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_walk_leaves_the_root_and_the_next_call_redoes_it() {
    let fs = Mounted::tmpfs();
    let vol = big_volume(&fs);
    let agent = Agent::start(fs.path(), &ONE_SLOW_WALKER);
    let mut client = agent.client().await;
    let before = gid_mode(&vol);

    let req = fs_group(&vol, 2000, proto::ChangePolicy::OnRootMismatch);
    let (job, mut stream) = walk_started(&mut client, req.clone()).await;
    let listed = client
        .list(proto::ListRequest {})
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].job_id, job);
    assert_eq!(listed[0].state(), proto::JobState::Running);

    let asked = Instant::now();
    let cancelled = client
        .cancel(proto::CancelRequest {
            job_id: job.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cancelled;
    assert_eq!(cancelled, vec![job.clone()]);
    let mut result = None;
    while let Some(ev) = stream.message().await.unwrap() {
        if let Some(Event::Result(r)) = ev.event {
            result = Some(r);
        }
    }
    let result = result.expect("a result after cancel");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        asked.elapsed()
    );
    assert_eq!(result.outcome(), proto::Outcome::Cancelled);
    assert!(
        result.visited < 50_101,
        "the walk was not interrupted: {result:?}"
    );
    assert_eq!(gid_mode(&vol), before, "a cancelled pass changed the root");

    let err = client
        .cancel(proto::CancelRequest {
            job_id: job,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let events = prepare(&mut client, req).await.unwrap();
    let r = result_of(&events);
    assert_eq!(
        r.outcome(),
        proto::Outcome::Complete,
        "the next call walked again: {r:?}"
    );
    assert_eq!(r.visited, 50_101);
    assert_eq!(gid_mode(&vol), (2000, 0o2775));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_walk_exits_0_with_the_root_unchanged_and_the_next_agent_redoes_it() {
    let fs = Mounted::tmpfs();
    let vol = big_volume(&fs);
    let before = gid_mode(&vol);
    let args = [&ONE_SLOW_WALKER[..], &["--shutdown-grace", "0s"]].concat();
    let mut agent = Agent::start(fs.path(), &args);
    let mut client = agent.client().await;
    let req = fs_group(&vol, 2000, proto::ChangePolicy::OnRootMismatch);
    let (_, mut stream) = walk_started(&mut client, req.clone()).await;

    let status = tokio::task::block_in_place(|| agent.terminate());
    assert_eq!(
        status.code(),
        Some(0),
        "volsec serve exited with {status:?}"
    );
    let mut outcome = None;
    while let Ok(Some(ev)) = stream.message().await {
        if let Some(Event::Result(r)) = ev.event {
            outcome = Some(r.outcome());
        }
    }
    assert_eq!(
        outcome,
        Some(proto::Outcome::Cancelled),
        "callers learn the job was cancelled"
    );
    assert_eq!(
        gid_mode(&vol),
        before,
        "an interrupted pass changed the root"
    );
    assert!(!agent.socket().exists(), "the socket is removed on exit");

    let agent = Agent::start(fs.path(), &args);
    let mut client = agent.client().await;
    let events = prepare(&mut client, req).await.unwrap();
    assert_eq!(result_of(&events).outcome(), proto::Outcome::Complete);
    assert_eq!(gid_mode(&vol), (2000, 0o2775));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disallowed_peer_uid_is_refused() {
    let fs = Mounted::tmpfs();
    let vol = fs.path().join("v");
    make_volume(&vol, 1, 3);

    // Root itself is refused when only uid 4242 may call.
    let agent = Agent::start(fs.path(), &["--allow-uid", "4242"]);
    let mut client = agent.client().await;
    let err = prepare(
        &mut client,
        fs_group(&vol, 2000, proto::ChangePolicy::Always),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("uid 0"), "{}", err.message());
    assert_eq!(gid_mode(&vol).0, 0, "nothing was touched");
    drop(agent);

    let agent = Agent::start(fs.path(), &[]);
    let mode = std::fs::metadata(agent.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o600, "the socket is created 0600");
    std::fs::set_permissions(agent.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        volsec()
            .arg("client")
            .arg("--socket")
            .arg(agent.socket())
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run the client as uid 65534")
    };
    // The 0600 socket keeps uid 65534 out before any call...
    let out = as_nobody(&["list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the agent"), "{stderr}");
    // ...and if the socket is loosened by mistake, SO_PEERCRED still refuses it.
    std::fs::set_permissions(agent.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&["prepare", "--fs-group", "2000", vol.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PermissionDenied") && stderr.contains("uid 65534"),
        "{stderr}"
    );
    assert_eq!(gid_mode(&vol).0, 0, "nothing was touched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_malformed_and_oversized_requests_are_refused_and_nothing_is_touched() {
    let fs = Mounted::tmpfs();
    let allowed = fs.subdir("kubelet");
    let vol = allowed.join("v");
    make_volume(&vol, 1, 3);
    let outside = fs.subdir("outside");
    make_volume(&outside.join("secret"), 1, 3);
    std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
    let agent = Agent::start(&allowed, &[]);
    let mut client = agent.client().await;

    let cases: Vec<(String, Code)> = vec![
        (
            outside.join("secret").display().to_string(),
            Code::PermissionDenied,
        ),
        (
            format!("{}/../outside/secret", allowed.display()),
            Code::InvalidArgument,
        ),
        (
            allowed.join("link/secret").display().to_string(),
            Code::PermissionDenied,
        ),
        (allowed.display().to_string(), Code::PermissionDenied),
        (
            allowed.join("missing").display().to_string(),
            Code::NotFound,
        ),
        ("relative/path".into(), Code::InvalidArgument),
        (String::new(), Code::InvalidArgument),
        ("x".repeat(5 << 20), Code::InvalidArgument),
    ];
    for (path, code) in cases {
        let req = proto::PrepareRequest {
            path: path.clone(),
            fs_group: Some(2000),
            ..Default::default()
        };
        let err = prepare(&mut client, req).await.unwrap_err();
        let shown: String = path.chars().take(80).collect();
        assert_eq!(err.code(), code, "{shown}: {}", err.message());
        assert!(!err.message().is_empty());
    }
    let nothing = proto::PrepareRequest {
        path: vol.display().to_string(),
        ..Default::default()
    };
    assert_eq!(
        prepare(&mut client, nothing).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let bad_label = proto::PrepareRequest {
        selinux_context: "nonsense".into(),
        ..fs_group(&vol, 2000, proto::ChangePolicy::Always)
    };
    assert_eq!(
        prepare(&mut client, bad_label).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let bad_policy = proto::PrepareRequest {
        change_policy: 42,
        ..fs_group(&vol, 2000, proto::ChangePolicy::Always)
    };
    assert_eq!(
        prepare(&mut client, bad_policy).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // Bytes that are not a PrepareRequest: field 1 (path) sent as a varint.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Garbage {
        #[prost(uint64, tag = "1")]
        path: u64,
    }
    let channel = agent.channel().await;
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.unwrap();
    let err = raw
        .server_streaming(
            tonic::Request::new(Garbage { path: 7 }),
            tonic::codegen::http::uri::PathAndQuery::from_static("/volsec.v1.VolumeAgent/Prepare"),
            tonic_prost::ProstCodec::<Garbage, proto::PrepareEvent>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());

    for p in all_paths(&outside).iter().chain(all_paths(&vol).iter()) {
        assert_eq!(gid_mode(p).0, 0, "{} was touched", p.display());
    }
    // Still serving.
    assert!(client.list(proto::ListRequest {}).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_over_http_and_grpc() {
    let fs = Mounted::tmpfs();
    let vol = fs.path().join("v");
    make_volume(&vol, 2, 10);
    let agent = Agent::start(fs.path(), &[]);
    let mut client = agent.client().await;
    let req = fs_group(&vol, 2000, proto::ChangePolicy::OnRootMismatch);
    let first = prepare(&mut client, req.clone()).await.unwrap();
    assert_eq!(result_of(&first).outcome(), proto::Outcome::Complete);
    let second = prepare(&mut client, req).await.unwrap();
    let r = result_of(&second);
    assert_eq!(r.outcome(), proto::Outcome::Skipped);
    assert_eq!(r.skip_reason(), proto::SkipReason::OnRootMismatch);

    assert_eq!(http_get(agent.metrics, "/healthz").0, 200);
    assert_eq!(http_get(agent.metrics, "/readyz").0, 200);
    let (status, m) = http_get(agent.metrics, "/metrics");
    assert_eq!(status, 200);
    // kubelet's metric: the walk, not the skip (kubelet returns before its hook).
    assert_eq!(
        sample(
            &m,
            "storage_operation_duration_seconds_count{migrated=\"false\",operation_name=\"volume_apply_access_control\",status=\"success\",volume_plugin=\"UnknownVolumePlugin\"}"
        ),
        1.0
    );
    for result in ["complete", "skipped"] {
        assert_eq!(
            sample(
                &m,
                &format!(
                    "volsec_job_duration_seconds_count{{work=\"fs_group\",result=\"{result}\"}}"
                )
            ),
            1.0
        );
    }
    assert_eq!(sample(&m, "volsec_inodes_total{result=\"changed\"}"), 23.0);
    assert_eq!(sample(&m, "volsec_inodes_total{result=\"failed\"}"), 0.0);
    assert_eq!(
        sample(&m, "volsec_skips_total{reason=\"OnRootMismatch\"}"),
        1.0
    );
    assert_eq!(sample(&m, "volsec_walks_total"), 1.0);
    assert_eq!(sample(&m, "volsec_jobs_running"), 0.0);
    assert_eq!(sample(&m, "volsec_jobs_queued"), 0.0);

    let channel = agent.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "volsec.v1.VolumeAgent".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

#[test]
fn the_client_streams_progress_and_kubelets_slow_pass_messages() {
    let fs = Mounted::tmpfs();
    let pods = fs.subdir("pods");
    let vol = pods.join("0f1e-uid/volumes/kubernetes.io~empty-dir/data");
    make_volume(&vol, 100, 500);
    // Intervals far below the walk's length (about 150 ms here, one thread): three slow-pass
    // messages and three progress lines come however fast the machine walks.
    let args = [
        "--threads",
        "1",
        "--progress-interval",
        "5ms",
        "--slow-after",
        "10ms",
        "--slow-every",
        "20ms",
    ];
    let agent = Agent::start(fs.path(), &args);
    // JSON: one document when the job ends, with the warnings the call saw.
    let out = succeeds(
        volsec()
            .arg("client")
            .arg("--socket")
            .arg(agent.socket())
            .args(["--output", "json", "prepare", "--fs-group", "2000"])
            .arg(&vol),
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");

    let dir = "0f1e-uid/volumes/kubernetes.io~empty-dir/data";
    let warnings = doc["warnings"].as_array().expect("warnings");
    assert!(
        warnings.len() >= 3,
        "expected kubelet's slow-pass messages: {doc:#}"
    );
    assert_eq!(
        warnings[0]["message"],
        format!("Setting volume ownership for {dir} and fsGroup set. If the volume has a lot of files then setting volume ownership could be slow, see https://github.com/kubernetes/kubernetes/issues/69699")
    );
    assert_eq!(warnings[1]["reason"], "VolumePermissionChangeInProgress");
    assert_eq!(warnings[1]["pod_event"], true);
    assert_eq!(
        warnings[1]["message"],
        format!("Setting volume ownership for {dir} is taking longer than expected, consider using OnRootMismatch - https://kubernetes.io/docs/tasks/configure-pod-container/security-context/#configure-volume-permission-and-ownership-change-policy-for-pods")
    );
    let n = warnings[2]["processed"].as_u64().unwrap();
    assert!(n > 0);
    assert_eq!(
        warnings[2]["message"],
        format!("Setting volume ownership for {dir}, processed {n} files.")
    );

    assert!(doc["job_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(doc["outcome"], "complete");
    assert_eq!(doc["visited"], 50_101);
    assert_eq!(gid_mode(&vol), (2000, 0o2775));

    // Text: progress lines as they come, their counts rising.
    let out = succeeds(
        volsec()
            .arg("client")
            .arg("--socket")
            .arg(agent.socket())
            .args(["prepare", "--fs-group", "2001"])
            .arg(&vol),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let visited: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            l.split_once(": ")?
                .1
                .split_once(" inodes, ")?
                .0
                .parse()
                .ok()
        })
        .collect();
    assert!(visited.len() >= 3, "too few progress lines: {text}");
    assert!(visited.windows(2).all(|w| w[0] <= w[1]), "{visited:?}");
    assert_eq!(gid_mode(&vol), (2001, 0o2775));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_answers_as_volsec_plan_does_and_its_prepare_carries_it_out() {
    let fs = Mounted::tmpfs();
    let vol = fs.path().join("data");
    make_volume(&vol, 2, 5);
    let agent = Agent::start(fs.path(), &[]);
    let mut client = agent.client().await;
    let read = |name: &str| std::fs::read(fixture(name)).unwrap();
    let request = proto::PlanRequest {
        pod: read("pods/on-root-mismatch.yaml"),
        volume: "data".into(),
        persistent_volume: read("pv/rwo.yaml"),
        node: Some(proto::NodeFacts {
            selinux_defaults: "system_u:object_r:container_file_t:s0".into(),
            ..Default::default()
        }),
        path: vol.display().to_string(),
        ..Default::default()
    };
    let plan = client
        .plan(request.clone())
        .await
        .expect("plan")
        .into_inner();
    assert_eq!(
        plan.ownership_action, "recursive",
        "{}",
        plan.ownership_reason
    );
    assert_eq!(plan.selinux_action, "none");

    // The same decision as the command line's, from the same inputs.
    let out = succeeds(
        volsec()
            .args(["plan", "--output", "json", "--volume", "data"])
            .arg("--pod")
            .arg(fixture("pods/on-root-mismatch.yaml"))
            .arg("--pv")
            .arg(fixture("pv/rwo.yaml"))
            .args([
                "--selinux-defaults",
                "system_u:object_r:container_file_t:s0",
            ])
            .arg("--path")
            .arg(&vol),
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rpc: serde_json::Value = serde_json::from_str(&plan.plan_json).unwrap();
    assert_eq!(rpc, cli);

    let prepare_req = plan.prepare.expect("volsec has a walk to do");
    assert_eq!(prepare_req.fs_group, Some(2000));
    assert_eq!(
        prepare_req.change_policy(),
        proto::ChangePolicy::OnRootMismatch
    );
    let events = prepare(&mut client, prepare_req).await.unwrap();
    assert_eq!(result_of(&events).outcome(), proto::Outcome::Complete);
    assert_eq!(gid_mode(&vol), (2000, 0o2775));

    let again = client.plan(request.clone()).await.unwrap().into_inner();
    assert_eq!(again.ownership_action, "skip", "{}", again.ownership_reason);

    let bad = proto::PlanRequest {
        pod: read("bad/malformed.yaml"),
        ..request.clone()
    };
    let err = client.plan(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("pod"), "{}", err.message());
    let outside = proto::PlanRequest {
        path: "/etc".into(),
        ..request
    };
    assert_eq!(
        client.plan(outside).await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

/// Waits until the agent lists `n` jobs (a call's job is listed once the agent has taken it),
/// so a test goes on as soon as a call is in, not after a guessed sleep.
async fn jobs_listed(client: &mut Client, n: usize) {
    for _ in 0..500 {
        let jobs = client
            .list(proto::ListRequest {})
            .await
            .unwrap()
            .into_inner()
            .jobs;
        if jobs.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the agent never listed {n} jobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_behind_a_cancelled_one_still_waits_for_the_running_one() {
    let fs = Mounted::tmpfs();
    // Three times the usual volume: the first walk must outlast two calls queueing behind
    // it and a cancel (at 330,000 inodes/s here, 50,101 inodes left no room to spare).
    let vol = fs.path().join("bigger");
    make_volume(&vol, 300, 500);
    let agent = Agent::start(fs.path(), &ONE_SLOW_WALKER);
    let mut client = agent.client().await;
    let (running, first) = walk_started(
        &mut client,
        fs_group(&vol, 2000, proto::ChangePolicy::Always),
    )
    .await;

    let mut c = client.clone();
    let second_req = fs_group(&vol, 3000, proto::ChangePolicy::Always);
    let second = tokio::spawn(async move { prepare(&mut c, second_req).await });
    jobs_listed(&mut client, 2).await;
    let mut c = client.clone();
    let third_req = fs_group(&vol, 4000, proto::ChangePolicy::Always);
    let third = tokio::spawn(async move { prepare(&mut c, third_req).await });
    jobs_listed(&mut client, 3).await;

    let jobs = client
        .list(proto::ListRequest {})
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let cancelled = client
        .cancel(proto::CancelRequest {
            job_id: jobs[1].job_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cancelled;
    assert_eq!(cancelled.len(), 1);
    let second = second.await.unwrap().unwrap();
    assert_eq!(result_of(&second).outcome(), proto::Outcome::Cancelled);

    // The third job is still queued: the first one walks on.
    let jobs = client
        .list(proto::ListRequest {})
        .await
        .unwrap()
        .into_inner()
        .jobs;
    let states: Vec<_> = jobs.iter().map(|j| (j.job_id.clone(), j.state())).collect();
    assert_eq!(jobs.len(), 2, "{states:?}");
    assert_eq!(jobs[0].job_id, running);
    assert_eq!(jobs[0].state(), proto::JobState::Running, "{states:?}");
    assert_eq!(jobs[1].state(), proto::JobState::Queued, "{states:?}");
    drop(first);

    let third = third.await.unwrap().unwrap();
    assert_eq!(result_of(&third).outcome(), proto::Outcome::Complete);
    assert_eq!(gid_mode(&vol).0, 4000);
}

/// The agent gathers the node facts with `volsec plan`'s code: a socket whose driver is not
/// the volume's is refused with the command line's sentence, and a non-CSI volume's plan
/// does not ask the socket at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_refuses_another_driver_s_socket_as_volsec_plan_does() {
    use volsec_grpc::csi::fake_driver::{Behaviour, FakeDriver};
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.sock");
    let driver = FakeDriver::start(
        &wrong,
        Behaviour {
            volume_mount_group: true,
            name: Some("nfs.csi.k8s.io".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let agent = Agent::start(dir.path(), &[]);
    let mut client = agent.client().await;
    let read = |name: &str| std::fs::read(fixture(name)).unwrap();
    let node = proto::NodeFacts {
        selinux_defaults: "system_u:object_r:container_file_t:s0".into(),
        csi_socket: wrong.display().to_string(),
        ..Default::default()
    };
    let request = proto::PlanRequest {
        pod: read("pods/on-root-mismatch.yaml"),
        volume: "data".into(),
        persistent_volume: read("pv/rwo.yaml"),
        node: Some(node.clone()),
        ..Default::default()
    };
    let rpc = client.plan(request).await.unwrap_err();
    assert_eq!(rpc.code(), Code::InvalidArgument, "{}", rpc.message());

    let mut cmd = volsec_pod(
        "plan",
        "pods/on-root-mismatch.yaml",
        "data",
        &["--pv", "@pv/rwo.yaml", "--csi-socket"],
    );
    cmd.arg(&wrong).args([
        "--selinux-defaults",
        "system_u:object_r:container_file_t:s0",
    ]);
    // Off the runtime, so that it keeps serving the driver.
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cli = stderr
        .lines()
        .find_map(|l| l.split_once("--csi-socket ").map(|(_, sentence)| sentence))
        .unwrap_or_else(|| panic!("no --csi-socket refusal in {stderr}"));
    assert!(
        cli.contains("belongs to driver \"nfs.csi.k8s.io\""),
        "{cli}"
    );
    assert_eq!(rpc.message(), format!("node.csi_socket: {cli}"));

    let not_csi = proto::PlanRequest {
        pod: read("pods/security-context.yaml"),
        volume: "sec-ctx-vol".into(),
        node: Some(proto::NodeFacts {
            csi_socket: dir.path().join("missing.sock").display().to_string(),
            ..node
        }),
        ..Default::default()
    };
    let plan = client.plan(not_csi).await.expect("plan").into_inner();
    let json: serde_json::Value = serde_json::from_str(&plan.plan_json).unwrap();
    assert_eq!(json["csi_volume_mount_group"], serde_json::Value::Null);
    assert!(
        plan.warnings[0].contains("was not asked: volume \"sec-ctx-vol\" is not a CSI volume"),
        "{:?}",
        plan.warnings
    );
    driver.stop().await;
}

/// One sample line: (suffix, label names in order, `le`, value).
type Sample = (String, Vec<String>, Option<String>, String);

/// A family in Prometheus's text format: its HELP and TYPE lines, and per series (the
/// labels but `le`, as written) the samples in order.
#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    series: Vec<(String, Vec<Sample>)>,
}

/// Reads the family `name` out of an exposition, keeping the order of everything.
fn text_family(text: &str, name: &str) -> Family {
    let mut f = Family::default();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix(&format!("# HELP {name} ")) {
            f.help = Some(help.to_string());
        } else if let Some(kind) = line.strip_prefix(&format!("# TYPE {name} ")) {
            f.kind = Some(kind.to_string());
        } else if let Some(rest) = line.strip_prefix(name) {
            let (suffix, rest) = rest.split_once('{').expect("a sample with labels");
            let (labels, value) = rest.rsplit_once("} ").expect("labels, then the value");
            let mut names = Vec::new();
            let mut le = None;
            let mut series = Vec::new();
            // Label values here hold no `","`: split at the pairs.
            for pair in labels.split("\",") {
                let (label, value) = pair.split_once("=\"").expect("name=\"value\"");
                let value = value.trim_end_matches('"');
                names.push(label.to_string());
                if label == "le" {
                    le = Some(value.to_string());
                } else {
                    series.push(format!("{label}={value}"));
                }
            }
            let key = series.join(",");
            let sample = (suffix.to_string(), names, le, value.to_string());
            match f.series.iter_mut().find(|(k, _)| *k == key) {
                Some((_, samples)) => samples.push(sample),
                None => f.series.push((key, vec![sample])),
            }
        }
    }
    f
}

/// The agent's `storage_operation_duration_seconds`, scraped over HTTP from the running
/// process, has kubelet's exposition: the HELP and TYPE lines, the label names in kubelet's
/// order, the buckets as kubelet spells them, the operation name and status values, each
/// series exactly as `fixtures/metrics/kubelet-storage-operation.prom` shows kubelet's. A
/// completed fsGroup pass is `success`, a cancelled one `fail-unknown`; a skip and a dry run
/// are not kubelet operations and are not observed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_kubelets_exposition() {
    const NAME: &str = "storage_operation_duration_seconds";
    const PLUGIN: &str = "kubernetes.io/csi:ebs.csi.aws.com";
    let kubelet = text_family(
        &std::fs::read_to_string(fixture("metrics/kubelet-storage-operation.prom")).unwrap(),
        NAME,
    );
    assert_eq!(kubelet.series.len(), 2, "the fixture: {kubelet:?}");

    let fs = Mounted::tmpfs();
    let small = fs.path().join("small");
    make_volume(&small, 2, 10);
    let big = big_volume(&fs);
    let agent = Agent::start(fs.path(), &ONE_SLOW_WALKER);
    let mut client = agent.client().await;
    let (status, before) = http_get(agent.metrics, "/metrics");
    assert_eq!(status, 200);
    let empty = text_family(&before, NAME);
    assert_eq!(
        (&empty.help, &empty.kind),
        (&kubelet.help, &kubelet.kind),
        "HELP and TYPE before any operation"
    );
    assert!(empty.series.is_empty());

    let with_plugin = |path: &Path, policy| proto::PrepareRequest {
        volume_plugin: PLUGIN.into(),
        ..fs_group(path, 2000, policy)
    };
    let done = prepare(
        &mut client,
        with_plugin(&small, proto::ChangePolicy::OnRootMismatch),
    )
    .await
    .unwrap();
    assert_eq!(result_of(&done).outcome(), proto::Outcome::Complete);
    let skipped = prepare(
        &mut client,
        with_plugin(&small, proto::ChangePolicy::OnRootMismatch),
    )
    .await
    .unwrap();
    assert_eq!(result_of(&skipped).outcome(), proto::Outcome::Skipped);
    let dry = prepare(
        &mut client,
        proto::PrepareRequest {
            dry_run: true,
            ..with_plugin(&small, proto::ChangePolicy::Always)
        },
    )
    .await
    .unwrap();
    assert_eq!(result_of(&dry).outcome(), proto::Outcome::Complete);
    let (job, mut stream) =
        walk_started(&mut client, with_plugin(&big, proto::ChangePolicy::Always)).await;
    client
        .cancel(proto::CancelRequest {
            job_id: job,
            ..Default::default()
        })
        .await
        .unwrap();
    while stream.message().await.unwrap().is_some() {}

    let mut raw = String::new();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", agent.metrics)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s.read_to_string(&mut raw).unwrap();
    let (head, text) = raw.split_once("\r\n\r\n").expect("headers, then the body");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "Prometheus's text format, as kubelet serves it: {head}"
    );
    let ours = text_family(text, NAME);
    assert_eq!(ours.help, kubelet.help);
    assert_eq!(ours.kind, kubelet.kind);
    let keys = |f: &Family| f.series.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&ours),
        keys(&kubelet),
        "the series: label names, values and order"
    );
    for ((_, theirs), (_, mine)) in kubelet.series.iter().zip(&ours.series) {
        let shape = |samples: &[Sample]| {
            samples
                .iter()
                .map(|(suffix, names, le, _)| (suffix.clone(), names.clone(), le.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shape(mine),
            shape(theirs),
            "suffixes, label names, le values"
        );
    }
    let count = |status: &str| {
        sample(
            text,
            &format!("{NAME}_count{{migrated=\"false\",operation_name=\"volume_apply_access_control\",status=\"{status}\",volume_plugin=\"{PLUGIN}\"}}"),
        )
    };
    assert_eq!(
        count("success"),
        1.0,
        "the walk, not the skip or the dry run"
    );
    assert_eq!(count("fail-unknown"), 1.0, "the cancelled walk");
    // volsec's own metrics carry its prefix, and count every job.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            line.starts_with(NAME) || line.starts_with("volsec_"),
            "a metric outside kubelet's name and the volsec_ prefix: {line}"
        );
    }
    assert_eq!(
        sample(
            text,
            "volsec_job_duration_seconds_count{work=\"fs_group\",result=\"cancelled\"}"
        ),
        1.0
    );
}
