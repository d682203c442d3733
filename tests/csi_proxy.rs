//! `volsec csi-proxy` against a real fake driver: real gRPC over Unix sockets, real bind
//! mounts on tmpfs, a "kubelet" that sends the bytes kubelet builds (with fields the
//! proxy's proto does not know) and retries as kubelet does. Runs as root (CI does).

use crate::common::{
    all_paths, gid_mode, healthz, http_get, mkdir, require_root, unfinished_requests_as_nobody,
    volsec, write_file, Mounted,
};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Endpoint, Uri};
use tonic::{Code, Status};
use volsec_core::ownership::ChangePolicy;
use volsec_grpc::agent::jobs::Limits;
use volsec_grpc::csi::fake_driver::{self, Behaviour, FakeDriver, Publish};
use volsec_grpc::proxy::codec::RawCodec;
use volsec_grpc::proxy::wire::{self, access_mode, encode::Message, Call, Strip};
use volsec_grpc::proxy::{self, Config, FsGroupPolicy, Listener, Settings};

const CAPS: &str = "/csi.v1.Node/NodeGetCapabilities";
const STAGE: &str = "/csi.v1.Node/NodeStageVolume";
const UNSTAGE: &str = "/csi.v1.Node/NodeUnstageVolume";
const PUBLISH: &str = "/csi.v1.Node/NodePublishVolume";
const UNPUBLISH: &str = "/csi.v1.Node/NodeUnpublishVolume";
const INFO: &str = "/csi.v1.Identity/GetPluginInfo";
const DRIVER_NAME: &str = "fake.csi.volsec.io";
/// kubelet's per-call timeout is 2 minutes; the tests use short ones.
const CALL: Duration = Duration::from_secs(5);

/// One unary call with kubelet's shape: a new connection, a deadline, raw bytes.
async fn call(
    sock: &Path,
    method: &str,
    payload: Vec<u8>,
    timeout: Duration,
    metadata: &[(&'static str, &'static str)],
) -> Result<Vec<u8>, Status> {
    let sock = sock.to_path_buf();
    let started = Instant::now();
    let exchange = async move {
        let channel = Endpoint::from_static("http://kubelet.test")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let sock = sock.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(sock).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(prost::bytes::Bytes::from(payload));
        request.set_timeout(timeout);
        for (k, v) in metadata {
            request.metadata_mut().insert(*k, v.parse().unwrap());
        }
        grpc.unary(request, PathAndQuery::from_static(leak(method)), RawCodec)
            .await
            .map(|r| r.into_inner().to_vec())
    };
    let answer = tokio::time::timeout(timeout + Duration::from_secs(3), exchange)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{method}: no answer {:?} after the deadline",
                started.elapsed()
            )
        });
    answer
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// A proxy served in-process on `dir/csi.sock`, in front of `driver`.
struct Proxy {
    sock: PathBuf,
    metrics: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), proxy::ServeError>>,
}

impl Proxy {
    fn start(dir: &Path, driver: &Path, settings: Settings, allowed_root: &Path) -> Proxy {
        let sock = dir.join("csi.sock");
        // The previous proxy of a test leaves the socket it was given.
        let _ = std::fs::remove_file(&sock);
        let listener =
            Listener::from_std(std::os::unix::net::UnixListener::bind(&sock).unwrap()).unwrap();
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = Config {
            driver: driver.to_path_buf(),
            settings,
            allowed_roots: vec![allowed_root.to_path_buf()],
            allow_uids: vec![0],
            limits: Limits {
                threads: 2,
                ..Limits::default()
            },
            metrics_listen: Some(metrics),
            shutdown_grace: Duration::ZERO,
            driver_timeout: Duration::from_secs(10),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(proxy::serve(listener, config, async {
            let _ = rx.await;
        }));
        Proxy {
            sock,
            metrics,
            stop: Some(tx),
            task,
        }
    }

    /// An HTTP GET on the metrics endpoint, once it listens: (status, body).
    fn http_get(&self, path: &str) -> (u16, String) {
        for _ in 0..50 {
            let answer = http_get(self.metrics.port(), path);
            if answer.0 != 0 {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("metrics endpoint {}: no answer", self.metrics);
    }

    fn metric(&self, line_prefix: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

fn settings(policy: FsGroupPolicy) -> Settings {
    Settings {
        fs_group_policy: policy,
        change_policy: ChangePolicy::Always,
        selinux_relabel: false,
    }
}

/// kubelet's node directory on a tmpfs (the allowed root), and the driver's data on another.
struct Node {
    sockets: tempfile::TempDir,
    kubelet: Mounted,
    data: Mounted,
}

impl Node {
    fn new() -> Node {
        require_root();
        Node {
            sockets: tempfile::tempdir().unwrap(),
            kubelet: Mounted::tmpfs(),
            data: Mounted::tmpfs(),
        }
    }

    fn driver_sock(&self) -> PathBuf {
        self.sockets.path().join("csi.sock.internal")
    }

    fn driver(&self, volume_mount_group: bool, publish: Publish) -> FakeDriver {
        FakeDriver::start(
            &self.driver_sock(),
            Behaviour {
                volume_mount_group,
                name: Some(DRIVER_NAME.into()),
                publish,
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// `volsec csi-proxy` as its own process, listening on `sock` in front of this node's
    /// driver, volumes allowed below its kubelet directory: add flags, then spawn.
    fn proxy_process(&self, sock: &Path) -> std::process::Command {
        let mut c = volsec();
        c.args(["csi-proxy", "--listen"])
            .arg(sock)
            .arg("--driver")
            .arg(self.driver_sock())
            .arg("--allowed-root")
            .arg(self.kubelet.path());
        c
    }

    fn proxy(&self, settings: Settings) -> Proxy {
        Proxy::start(
            self.sockets.path(),
            &self.driver_sock(),
            settings,
            self.kubelet.path(),
        )
    }

    /// `…/pods/<pod>/volumes/kubernetes.io~csi/<pv>/mount`, its parent made as kubelet does.
    fn target(&self, pod: &str, pv: &str) -> PathBuf {
        let dir = self
            .kubelet
            .path()
            .join("pods")
            .join(pod)
            .join("volumes/kubernetes.io~csi")
            .join(pv);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("mount")
    }

    /// A small volume: directories, files with odd modes, a setuid file, a symlink.
    fn small_volume(&self, name: &str) -> PathBuf {
        let v = self.data.path().join(name);
        mkdir(&v, 0o755);
        mkdir(&v.join("a/b"), 0o700);
        write_file(&v.join("a/f"), 0o600);
        write_file(&v.join("a/b/g"), 0o4755);
        write_file(&v.join("top"), 0o644);
        std::os::unix::fs::symlink("/etc/passwd", v.join("link")).unwrap();
        v
    }
}

/// The fields kubelet sends in a NodePublishVolumeRequest, plus secrets (7) and a field
/// from a newer spec (99) that no proto of volsec's knows.
struct Publication<'a> {
    volume_id: &'a str,
    target: &'a Path,
    fs_type: &'a str,
    mount_flags: &'a [&'a str],
    group: Option<&'a str>,
    mode: i32,
    readonly: bool,
    context: &'a [(&'a str, &'a str)],
}

impl<'a> Publication<'a> {
    fn new(volume_id: &'a str, target: &'a Path, group: Option<&'a str>) -> Publication<'a> {
        Publication {
            volume_id,
            target,
            fs_type: "ext4",
            mount_flags: &[],
            group,
            mode: access_mode::SINGLE_NODE_WRITER,
            readonly: false,
            context: &[],
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut m = Message::new()
            .string(1, self.volume_id)
            .string(
                3,
                "/var/lib/kubelet/plugins/kubernetes.io/csi/fake/globalmount",
            )
            .string(4, &self.target.to_string_lossy())
            .message(
                5,
                wire::encode::mount_capability(
                    self.fs_type,
                    self.mount_flags,
                    self.group,
                    self.mode,
                ),
            );
        if self.readonly {
            m = m.varint(6, 1);
        }
        m = m.map_entry(7, "password", "s3cret");
        for (k, v) in self.context {
            m = m.map_entry(8, k, v);
        }
        m.string(99, "a field from a newer CSI spec").into_bytes()
    }
}

fn unpublish_bytes(volume_id: &str, target: &Path) -> Vec<u8> {
    Message::new()
        .string(1, volume_id)
        .string(2, &target.to_string_lossy())
        .into_bytes()
}

/// Every entry below `root` (root included): group `gid` and kubelet's masks; symlinks
/// carry the group and keep their mode.
fn assert_kubelet_state(root: &Path, gid: u32, read_only: bool) {
    let (file, dir) = if read_only {
        (0o440, 0o2550)
    } else {
        (0o660, 0o2770)
    };
    for p in all_paths(root) {
        let (g, mode) = gid_mode(&p);
        assert_eq!(g, gid, "{}: group", p.display());
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_symlink() {
            continue;
        }
        let mask = if meta.is_dir() { dir } else { file };
        assert_eq!(
            mode & mask,
            mask,
            "{}: mode {mode:o} lacks {mask:o}",
            p.display()
        );
    }
}

/// (path, gid, mode) of every entry: to prove that nothing changed.
fn snapshot(root: &Path) -> Vec<(PathBuf, u32, u32)> {
    all_paths(root)
        .into_iter()
        .map(|p| {
            let (g, m) = gid_mode(&p);
            (p, g, m)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_is_added_only_when_the_driver_lacks_it() {
    let node = Node::new();
    let driver = node.driver(false, Publish::Nothing);
    let proxy = node.proxy(settings(FsGroupPolicy::File));
    let direct = call(&node.driver_sock(), CAPS, vec![], CALL, &[])
        .await
        .unwrap();
    let proxied = call(&proxy.sock, CAPS, vec![], CALL, &[]).await.unwrap();
    assert!(!wire::has_node_capability(&direct, wire::VOLUME_MOUNT_GROUP).unwrap());
    assert_eq!(proxied, wire::with_volume_mount_group(&direct));
    // Identity passes through: the registrar learns the driver's own name.
    let info = call(&proxy.sock, INFO, vec![], CALL, &[]).await.unwrap();
    assert_eq!(wire::plugin_name(&info).as_deref(), Some(DRIVER_NAME));
    // Health endpoints.
    assert_eq!(proxy.http_get("/healthz").0, 200);
    assert_eq!(proxy.http_get("/readyz").0, 200);
    proxy.stop().await;
    driver.stop().await;

    // A driver that applies fsGroup itself: the proxy changes nothing anywhere.
    let driver = node.driver(true, Publish::BindMount(node.small_volume("own")));
    let proxy = node.proxy(settings(FsGroupPolicy::File));
    let direct = call(&node.driver_sock(), CAPS, vec![], CALL, &[])
        .await
        .unwrap();
    let proxied = call(&proxy.sock, CAPS, vec![], CALL, &[]).await.unwrap();
    assert_eq!(proxied, direct);
    let target = node.target("pod-own", "pv-own");
    let before = snapshot(&node.data.path().join("own"));
    let publish = Publication::new("pv-own", &target, Some("2000")).bytes();
    call(&proxy.sock, PUBLISH, publish.clone(), CALL, &[])
        .await
        .unwrap();
    let seen = driver.received_for(PUBLISH);
    assert_eq!(
        seen.last().unwrap().bytes,
        publish,
        "forwarded byte for byte"
    );
    assert_eq!(snapshot(&node.data.path().join("own")), before, "no walk");
    call(
        &proxy.sock,
        UNPUBLISH,
        unpublish_bytes("pv-own", &target),
        CALL,
        &[],
    )
    .await
    .unwrap();
    proxy.stop().await;
    driver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_publish_unpublish_unstage_with_unknown_fields_intact() {
    let node = Node::new();
    let volume = node.small_volume("vol");
    let driver = node.driver(false, Publish::BindMount(volume.clone()));
    let proxy = node.proxy(settings(FsGroupPolicy::ReadWriteOnceWithFSType));
    call(&proxy.sock, CAPS, vec![], CALL, &[]).await.unwrap();

    let stage = Message::new()
        .string(1, "pv-1")
        .string(
            3,
            "/var/lib/kubelet/plugins/kubernetes.io/csi/fake/globalmount",
        )
        .message(
            4,
            wire::encode::mount_capability(
                "ext4",
                &["noatime"],
                Some("2000"),
                access_mode::SINGLE_NODE_WRITER,
            ),
        )
        .map_entry(5, "password", "s3cret")
        .string(99, "newer field")
        .into_bytes();
    let strip = Strip {
        volume_mount_group: true,
        context_flag: false,
    };
    call(
        &proxy.sock,
        STAGE,
        stage.clone(),
        CALL,
        &[("x-request-id", "stage-1")],
    )
    .await
    .unwrap();
    let got = driver.received_for(STAGE);
    assert_eq!(
        got[0].bytes,
        wire::strip_request(Call::NodeStageVolume, &stage, strip).unwrap()
    );
    assert!(got[0]
        .metadata
        .iter()
        .any(|(k, v)| k == "x-request-id" && v == "stage-1"));
    // Staging never walks.
    assert_eq!(gid_mode(&volume).0, 0);

    let target = node.target("pod-1", "pv-1");
    let publish = Publication::new("pv-1", &target, Some("2000")).bytes();
    call(&proxy.sock, PUBLISH, publish.clone(), CALL, &[])
        .await
        .unwrap();
    let got = driver.received_for(PUBLISH);
    let expected = wire::strip_request(Call::NodePublishVolume, &publish, strip).unwrap();
    assert_eq!(got[0].bytes, expected, "only volume_mount_group is gone");
    assert_eq!(
        expected.len(),
        publish.len() - 6,
        "the field and nothing else"
    );
    assert_kubelet_state(&volume, 2000, false);
    // The setuid bit chown(2) clears is put back, as kubelet does.
    assert_eq!(gid_mode(&volume.join("a/b/g")).1 & 0o4000, 0o4000);

    call(
        &proxy.sock,
        UNPUBLISH,
        unpublish_bytes("pv-1", &target),
        CALL,
        &[],
    )
    .await
    .unwrap();
    assert!(
        !target.exists(),
        "the driver unmounted and removed the target"
    );
    let unstage = Message::new()
        .string(1, "pv-1")
        .string(2, "/staging")
        .into_bytes();
    call(&proxy.sock, UNSTAGE, unstage.clone(), CALL, &[])
        .await
        .unwrap();
    assert_eq!(driver.received_for(UNSTAGE)[0].bytes, unstage);

    let ok = "storage_operation_duration_seconds_count{migrated=\"false\",operation_name=\"volume_apply_access_control\",status=\"success\",volume_plugin=\"kubernetes.io/csi:fake.csi.volsec.io\"}";
    assert_eq!(
        proxy.metric(ok),
        Some(1.0),
        "kubelet's metric, kubelet's labels"
    );
    assert_eq!(
        proxy.metric(
            "volsec_csi_proxy_calls_total{method=\"/csi.v1.Node/NodePublishVolume\",code=\"Ok\"}"
        ),
        Some(1.0)
    );
    proxy.stop().await;
    driver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_group_policy_fs_type_and_access_mode_decide_as_kubelet() {
    use access_mode::*;
    let node = Node::new();
    let mut case = 0;
    for policy in [
        FsGroupPolicy::File,
        FsGroupPolicy::ReadWriteOnceWithFSType,
        FsGroupPolicy::None,
    ] {
        for fs_type in ["", "ext4"] {
            for (mode, readonly) in [
                (SINGLE_NODE_WRITER, false),
                (SINGLE_NODE_WRITER, true),
                (SINGLE_NODE_READER_ONLY, false),
                (MULTI_NODE_READER_ONLY, false),
                (MULTI_NODE_MULTI_WRITER, false),
            ] {
                case += 1;
                let name = format!("v{case}");
                let volume = node.small_volume(&name);
                let driver = node.driver(false, Publish::BindMount(volume.clone()));
                let proxy = node.proxy(settings(policy));
                let target = node.target(&format!("pod-{case}"), &name);
                let mut p = Publication::new(&name, &target, Some("3000"));
                p.fs_type = fs_type;
                p.mode = mode;
                p.readonly = readonly;
                call(&proxy.sock, PUBLISH, p.bytes(), CALL, &[])
                    .await
                    .unwrap();
                let expect = !readonly
                    && match policy {
                        FsGroupPolicy::File => true,
                        FsGroupPolicy::None => false,
                        FsGroupPolicy::ReadWriteOnceWithFSType => {
                            !fs_type.is_empty() && is_single_node(mode)
                        }
                    };
                let what = format!(
                    "{policy:?} fs_type={fs_type:?} {} readonly={readonly}",
                    name_of(mode)
                );
                if expect {
                    assert_kubelet_state(&volume, 3000, is_reader_only(mode));
                } else {
                    assert_eq!(gid_mode(&volume).0, 0, "{what}: no walk");
                    assert_eq!(gid_mode(&volume.join("top")).0, 0, "{what}: no walk");
                }
                // The group never reaches the driver, eligible or not.
                let r = wire::read_volume_request(
                    Call::NodePublishVolume,
                    &driver.received_for(PUBLISH)[0].bytes,
                )
                .unwrap();
                assert_eq!(r.volume_mount_group, None, "{what}");
                call(
                    &proxy.sock,
                    UNPUBLISH,
                    unpublish_bytes(&name, &target),
                    CALL,
                    &[],
                )
                .await
                .unwrap();
                proxy.stop().await;
                driver.stop().await;
            }
        }
    }
}

fn name_of(mode: i32) -> String {
    access_mode::name(mode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_errors_pass_through_and_nothing_is_walked() {
    let node = Node::new();
    let volume = node.small_volume("vol");
    let before = snapshot(&volume);
    let mut fail = HashMap::new();
    fail.insert(
        PUBLISH.to_string(),
        (
            Code::ResourceExhausted,
            "volume quota exceeded on the backend".to_string(),
        ),
    );
    fail.insert(
        STAGE.to_string(),
        (
            Code::FailedPrecondition,
            "device /dev/sdz not attached".to_string(),
        ),
    );
    let driver = FakeDriver::start(
        &node.driver_sock(),
        Behaviour {
            publish: Publish::BindMount(volume.clone()),
            fail,
            ..Default::default()
        },
    )
    .unwrap();
    let proxy = node.proxy(settings(FsGroupPolicy::File));
    let target = node.target("pod", "pv");
    let err = call(
        &proxy.sock,
        PUBLISH,
        Publication::new("pv", &target, Some("2000")).bytes(),
        CALL,
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "volume quota exceeded on the backend");
    let stage = Message::new()
        .string(1, "pv")
        .message(
            4,
            wire::encode::mount_capability("ext4", &[], Some("2000"), 1),
        )
        .into_bytes();
    let err = call(&proxy.sock, STAGE, stage, CALL, &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "device /dev/sdz not attached");
    assert_eq!(snapshot(&volume), before);
    proxy.stop().await;
    driver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_hung_driver_is_unavailable_not_a_hang() {
    let node = Node::new();
    let deadline = Duration::from_secs(2);
    // Nothing at the driver's socket.
    let proxy = node.proxy(settings(FsGroupPolicy::File));
    let started = Instant::now();
    let err = call(&proxy.sock, CAPS, vec![], deadline, &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("csi.sock.internal"),
        "{}",
        err.message()
    );
    assert!(started.elapsed() < deadline);
    proxy.stop().await;

    // A socket that accepts and never speaks.
    let silent = fake_driver::silent(&node.driver_sock()).unwrap();
    let proxy = node.proxy(settings(FsGroupPolicy::File));
    let started = Instant::now();
    let err = call(&proxy.sock, INFO, vec![], deadline, &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < deadline,
        "answered before the caller's deadline"
    );
    proxy.stop().await;
    silent.abort();
    let _ = std::fs::remove_file(node.driver_sock());

    // A driver that hangs in NodePublishVolume.
    let driver = FakeDriver::start(
        &node.driver_sock(),
        Behaviour {
            hang: vec![PUBLISH.to_string()],
            ..Default::default()
        },
    )
    .unwrap();
    let proxy = node.proxy(settings(FsGroupPolicy::File));
    let target = node.target("pod", "pv");
    let err = call(
        &proxy.sock,
        PUBLISH,
        Publication::new("pv", &target, Some("2000")).bytes(),
        deadline,
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("did not answer"),
        "{}",
        err.message()
    );
    proxy.stop().await;
    driver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_invalid_argument_sentence_and_changes_nothing() {
    let node = Node::new();
    let volume = node.small_volume("vol");
    let before = snapshot(&volume);
    let driver = node.driver(false, Publish::BindMount(volume.clone()));
    let proxy = node.proxy(settings(FsGroupPolicy::File));
    let target = node.target("pod", "pv");
    // A symlink on the way to the target, pointing outside the allowed root.
    let outside = node.data.path().join("outside");
    mkdir(&outside, 0o755);
    std::os::unix::fs::symlink(&outside, node.kubelet.path().join("pods/evil")).unwrap();
    let through_link = node.kubelet.path().join("pods/evil/mount");
    let relative = PathBuf::from("pods/pod/volumes/mount");
    let empty = PathBuf::new();
    let elsewhere = node.data.path().join("vol-target");
    let cases: Vec<(&str, &Path, Option<&str>)> = vec![
        ("abc", &target, Some("abc")),
        ("-1", &target, Some("-1")),
        ("4294967295", &target, Some("4294967295")),
        ("empty target", &empty, Some("2000")),
        ("relative target", &relative, Some("2000")),
        ("outside the allowed root", &elsewhere, Some("2000")),
        ("through a symlink", &through_link, Some("2000")),
    ];
    for (what, t, group) in cases {
        let err = call(
            &proxy.sock,
            PUBLISH,
            Publication::new("pv", t, group).bytes(),
            CALL,
            &[],
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        let m = err.message();
        assert!(
            !m.contains('\n') && m.matches(". ").count() == 0,
            "{what}: one sentence: {m}"
        );
        eprintln!("{what}: {m}");
    }
    assert!(
        driver.received_for(PUBLISH).is_empty(),
        "the driver was never called"
    );
    assert_eq!(snapshot(&volume), before);
    assert!(!elsewhere.exists() && std::fs::read_dir(&outside).unwrap().next().is_none());
    proxy.stop().await;
    driver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_symlinked_or_unmounted_target_is_never_walked() {
    let node = Node::new();
    // Files outside the allowed root that a symlinked target_path would expose.
    let secret = node.data.path().join("etc");
    mkdir(&secret, 0o755);
    write_file(&secret.join("shadow"), 0o600);
    let before = snapshot(&secret);

    let driver = node.driver(false, Publish::Symlink(secret.clone()));
    let proxy = node.proxy(settings(FsGroupPolicy::File));
    let target = node.target("pod", "pv");
    let err = call(
        &proxy.sock,
        PUBLISH,
        Publication::new("pv", &target, Some("2000")).bytes(),
        CALL,
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("symlink"), "{}", err.message());
    assert_eq!(snapshot(&secret), before, "nothing outside was changed");
    std::fs::remove_file(&target).unwrap();
    proxy.stop().await;
    driver.stop().await;

    // A driver that "publishes" without mounting: the directory is the node's own.
    let driver = node.driver(false, Publish::MkdirOnly);
    let proxy = node.proxy(settings(FsGroupPolicy::File));
    let err = call(
        &proxy.sock,
        PUBLISH,
        Publication::new("pv", &target, Some("2000")).bytes(),
        CALL,
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "retryable: {err:?}");
    assert!(
        err.message().contains("not a mount point"),
        "{}",
        err.message()
    );
    assert_eq!(gid_mode(&target).0, 0, "the node's directory is untouched");
    proxy.stop().await;
    driver.stop().await;
}

/// A tree the pass needs longer than the tests' short deadlines for.
fn big_volume(node: &Node, name: &str, inodes: u64) -> PathBuf {
    let v = node.data.path().join(name);
    std::fs::create_dir(&v).unwrap();
    volsec_bench::tree::generate(
        &v,
        volsec_bench::tree::Spec::new(volsec_bench::tree::Shape::Kubelet, inodes),
        2,
    )
    .unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pass_answers_aborted_with_progress_and_retries_join_it() {
    let node = Node::new();
    let volume = big_volume(&node, "big", 120_000);
    let driver = node.driver(false, Publish::BindMount(volume.clone()));
    let proxy = node.proxy(settings(FsGroupPolicy::File));
    let target = node.target("pod", "pv-big");
    let publish = Publication::new("pv-big", &target, Some("2000")).bytes();
    let deadline = Duration::from_millis(100);

    let first = call(&proxy.sock, PUBLISH, publish.clone(), deadline, &[]).await;
    let err = first.expect_err("120,000 inodes take longer than 100 ms");
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(
        err.message()
            .starts_with("volsec: applying fsGroup 2000 to volume pv-big: ")
            && err.message().contains("inodes")
            && err.message().contains("kubelet retries"),
        "{}",
        err.message()
    );
    // Another pod with another fsGroup on the same target queues behind the pass.
    let other = Publication::new("pv-big", &target, Some("3000")).bytes();
    let queued = call(&proxy.sock, PUBLISH, other.clone(), deadline, &[])
        .await
        .unwrap_err();
    assert_eq!(queued.code(), Code::Aborted);
    assert!(
        queued.message().contains("waiting for another pass"),
        "{}",
        queued.message()
    );

    // kubelet's retries: exponential backoff from 100 ms (kubelet: 500 ms).
    let mut backoff = Duration::from_millis(100);
    let mut aborted = 1;
    loop {
        match call(&proxy.sock, PUBLISH, publish.clone(), deadline, &[]).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::Aborted => aborted += 1,
            Err(e) => panic!("retry: {e:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    assert!(aborted >= 2, "at least one retry joined the running pass");
    // Once done, another retry is OK at once, without a walk.
    call(&proxy.sock, PUBLISH, publish.clone(), CALL, &[])
        .await
        .unwrap();
    assert_eq!(
        proxy.metric("volsec_csi_proxy_passes_started_total"),
        Some(2.0),
        "one pass for fsGroup 2000 and one queued for 3000: the retries joined, never walked"
    );
    assert!(
        proxy
            .metric("volsec_csi_proxy_passes_joined_total")
            .unwrap()
            >= 1.0
    );
    assert!(
        proxy
            .metric("volsec_csi_proxy_aborted_in_progress_total")
            .unwrap()
            >= 2.0
    );

    // The queued fsGroup runs after it.
    loop {
        match call(
            &proxy.sock,
            PUBLISH,
            other.clone(),
            Duration::from_secs(2),
            &[],
        )
        .await
        {
            Ok(_) => break,
            Err(e) if e.code() == Code::Aborted => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(gid_mode(&volume).0, 3000);
    call(
        &proxy.sock,
        UNPUBLISH,
        unpublish_bytes("pv-big", &target),
        CALL,
        &[],
    )
    .await
    .unwrap();
    proxy.stop().await;
    driver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_pass_leaves_the_root_unmarked() {
    let node = Node::new();
    let volume = big_volume(&node, "big", 100_000);
    let driver = node.driver(false, Publish::BindMount(volume.clone()));
    let sock = node.sockets.path().join("csi.sock");
    let mut child = node
        .proxy_process(&sock)
        .args([
            "--fs-group-policy",
            "File",
            "--change-policy",
            "OnRootMismatch",
            "--threads",
            "1",
            "--shutdown-grace",
            "0s",
            "--metrics-listen",
            "none",
        ])
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < until,
            "the proxy did not bind {}",
            sock.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let target = node.target("pod", "pv-big");
    let publish = Publication::new("pv-big", &target, Some("2000")).bytes();
    let err = call(&sock, PUBLISH, publish, Duration::from_millis(500), &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let (gid, mode) = gid_mode(&volume);
    assert_ne!(gid, 2000, "an interrupted pass never marks the root done");
    assert_eq!(mode & 0o2000, 0, "no setgid on the root either");
    assert!(!sock.exists(), "the proxy removed its socket");
    driver.stop().await;
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&target)
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selinux_relabel_takes_the_context_flag_and_labels_in_the_same_pass() {
    let node = Node::new();
    let volume = node.small_volume("vol");
    let driver = node.driver(false, Publish::BindMount(volume.clone()));
    let mut s = settings(FsGroupPolicy::File);
    s.selinux_relabel = true;
    let proxy = node.proxy(s);
    let target = node.target("pod", "pv");
    let label = "system_u:object_r:container_file_t:s0:c1,c2";
    let flag = format!("context=\"{label}\"");
    let flags = ["noatime", flag.as_str()];
    let mut p = Publication::new("pv", &target, Some("2000"));
    p.mount_flags = &flags;
    call(&proxy.sock, PUBLISH, p.bytes(), CALL, &[])
        .await
        .unwrap();
    let seen = wire::read_volume_request(
        Call::NodePublishVolume,
        &driver.received_for(PUBLISH)[0].bytes,
    )
    .unwrap();
    assert_eq!(
        seen.mount_flags,
        vec!["noatime".to_string()],
        "the driver never sees context="
    );
    assert_kubelet_state(&volume, 2000, false);
    for path in all_paths(&volume) {
        let mut buf = [0u8; 256];
        let n = rustix::fs::lgetxattr(&path, "security.selinux", &mut buf)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let value = std::str::from_utf8(&buf[..n])
            .unwrap()
            .trim_end_matches('\0');
        assert_eq!(value, label, "{}", path.display());
    }
    proxy.stop().await;
    driver.stop().await;
}

/// The proxy's metrics endpoint is bounded as the agent's is: 1,100 unfinished requests
/// from uid 65534 leave the proxy its descriptors, a NodeGetCapabilities from kubelet
/// still answers at once, and `/healthz` answers once the slow requests' 5 s are up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_metrics_requests_from_another_user_do_not_stop_the_proxy() {
    let node = Node::new();
    let driver = node.driver(false, Publish::Nothing);
    let sock = node.sockets.path().join("csi.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = node
        .proxy_process(&sock)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while !healthz(port) {
        assert!(
            Instant::now() < until,
            "the proxy's /healthz never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (nobody, connected) =
        tokio::task::spawn_blocking(move || unfinished_requests_as_nobody(port, 1_100))
            .await
            .unwrap();
    let descriptors = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .unwrap()
        .count();
    let caps = call(&sock, CAPS, Vec::new(), CALL, &[]).await;
    let started = Instant::now();
    let mut healthy = false;
    while started.elapsed() < Duration::from_secs(15) {
        if tokio::task::spawn_blocking(move || healthz(port))
            .await
            .unwrap()
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(nobody);
    let _ = child.kill();
    let _ = child.wait();
    driver.stop().await;
    assert_eq!(connected, 1_100, "the attacker opened every connection");
    assert!(
        descriptors < 400,
        "the proxy holds {descriptors} descriptors under 1,100 unfinished requests"
    );
    assert!(caps.is_ok(), "NodeGetCapabilities: {caps:?}");
    assert!(
        healthy,
        "/healthz never answered under 1,100 unfinished requests"
    );
}
