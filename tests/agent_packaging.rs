//! The packaging in `packaging/`: the DaemonSet parsed as the API defines it, the systemd
//! units and the cargo-deb metadata checked against each other and against the binary's
//! flags, and systemd socket activation exercised with a real passed socket.

use k8s_openapi::api::apps::v1::DaemonSet;
use std::collections::BTreeSet;
use std::path::Path;

const SOCKET: &str = "/run/volsec/volsec.sock";

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn daemonset() -> DaemonSet {
    serde_yaml::from_str(&read("packaging/daemonset.yaml"))
        .expect("packaging/daemonset.yaml is a DaemonSet")
}

fn assert_known_flags(args: &[String], what: &str) {
    let help = crate::common::volsec()
        .args(["serve", "--help"])
        .output()
        .expect("volsec serve --help");
    let help = String::from_utf8(help.stdout).unwrap();
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let flag = arg.split('=').next().unwrap();
        assert!(
            help.contains(flag),
            "{what}: {flag} is not a flag of `volsec serve`"
        );
    }
}

#[test]
fn the_daemonset_has_exactly_the_mounts_and_privileges_it_needs() {
    let ds = daemonset();
    assert_eq!(ds.metadata.name.as_deref(), Some("volsec-agent"));
    let pod = ds.spec.template.spec.expect("pod spec");
    for (what, on) in [
        ("hostNetwork", pod.host_network),
        ("hostPID", pod.host_pid),
        ("hostIPC", pod.host_ipc),
    ] {
        assert_ne!(on, Some(true), "{what} is not needed");
    }
    assert_eq!(
        pod.automount_service_account_token,
        Some(false),
        "the agent never calls the API server"
    );

    let volumes = pod.volumes.expect("volumes");
    let host_paths: BTreeSet<(String, String)> = volumes
        .iter()
        .map(|v| {
            let hp = v
                .host_path
                .as_ref()
                .unwrap_or_else(|| panic!("{}: only hostPath volumes", v.name));
            (v.name.clone(), hp.path.clone())
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("kubelet-dir".to_string(), "/var/lib/kubelet".to_string()),
        ("socket-dir".to_string(), "/run/volsec".to_string()),
    ]
    .into();
    assert_eq!(host_paths, expected);

    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    let mounts = c.volume_mounts.as_ref().expect("mounts");
    assert_eq!(mounts.len(), 2);
    for m in mounts {
        match m.name.as_str() {
            "kubelet-dir" => {
                assert_eq!(m.mount_path, "/var/lib/kubelet");
                assert_eq!(m.mount_propagation.as_deref(), Some("HostToContainer"));
                assert_ne!(
                    m.read_only,
                    Some(true),
                    "the agent changes volumes below it"
                );
            }
            "socket-dir" => {
                assert_eq!(m.mount_path, "/run/volsec");
                assert_eq!(m.mount_propagation, None);
            }
            other => panic!("unexpected mount {other}"),
        }
    }

    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_ne!(sc.privileged, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let added: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
    assert_eq!(
        added,
        ["CHOWN", "DAC_READ_SEARCH", "FOWNER", "FSETID"].into()
    );

    let args = c.args.clone().expect("args");
    assert_eq!(args[0], "serve");
    assert!(args.contains(&format!("--socket={SOCKET}")));
    assert!(args.contains(&"--allowed-root=/var/lib/kubelet".to_string()));
    assert_known_flags(&args, "daemonset.yaml");

    let port = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .expect("an httpGet probe");
        (get.path.unwrap_or_default(), get.port)
    };
    let named = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into());
    assert_eq!(
        port(&c.liveness_probe),
        ("/healthz".to_string(), named.clone())
    );
    assert_eq!(port(&c.readiness_probe), ("/readyz".to_string(), named));
    let ports = c.ports.as_ref().expect("ports");
    assert_eq!(ports[0].container_port, 9808);
    assert!(args.contains(&"--metrics-listen=0.0.0.0:9808".to_string()));
}

fn unit_value<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_systemd_units_agree_with_the_daemonset_and_the_binary() {
    let socket = read("packaging/systemd/volsec.socket");
    assert_eq!(unit_value(&socket, "ListenStream"), [SOCKET]);
    assert_eq!(unit_value(&socket, "SocketMode"), ["0600"]);
    assert_eq!(unit_value(&socket, "SocketUser"), ["root"]);

    let service = read("packaging/systemd/volsec.service");
    let exec = unit_value(&service, "ExecStart");
    assert_eq!(exec.len(), 1);
    let args: Vec<String> = exec[0].split_whitespace().map(String::from).collect();
    assert_eq!(args[0], "/usr/bin/volsec");
    assert_eq!(args[1], "serve");
    assert_eq!(args[2..4], ["--socket".to_string(), SOCKET.to_string()]);
    assert_known_flags(&args, "volsec.service");

    let bounding: BTreeSet<String> = unit_value(&service, "CapabilityBoundingSet")[0]
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .collect();
    let ds = daemonset();
    let pod = ds.spec.template.spec.unwrap();
    let caps = pod.containers[0]
        .security_context
        .clone()
        .unwrap()
        .capabilities
        .unwrap();
    let added: BTreeSet<String> = caps.add.unwrap().into_iter().collect();
    assert_eq!(
        bounding, added,
        "the unit and the DaemonSet grant the same capabilities"
    );
    // `-`: the unit still starts on a host without /var/lib/kubelet (not a node yet).
    assert_eq!(
        unit_value(&service, "ReadWritePaths"),
        ["-/var/lib/kubelet"]
    );

    let defaults = read("packaging/volsec.default");
    let line = defaults
        .lines()
        .find_map(|l| l.strip_prefix("VOLSEC_ARGS="))
        .expect("VOLSEC_ARGS in volsec.default");
    let args: Vec<String> = line
        .trim_matches('"')
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_known_flags(&args, "volsec.default");
}

#[test]
fn the_deb_metadata_names_files_that_exist() {
    let cargo = read("Cargo.toml");
    let deb = cargo
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("a [package.metadata.deb] table in Cargo.toml");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for source in ["packaging/volsec.default", "README.md"] {
        assert!(
            deb.contains(&format!("[\"{source}\"")),
            "{source} is not an asset"
        );
        assert!(root.join(source).is_file(), "{source} is missing");
    }
    assert!(deb.contains("unit-scripts = \"packaging/systemd/\""));
    for unit in ["volsec.service", "volsec.socket"] {
        assert!(
            root.join("packaging/systemd").join(unit).is_file(),
            "{unit} is missing"
        );
    }
    let postinst = read("packaging/debian/postinst");
    assert!(
        postinst.contains("#DEBHELPER#"),
        "cargo-deb needs the #DEBHELPER# token"
    );
    assert!(deb.contains("conf-files = [\"/etc/default/volsec\"]"));
}

#[test]
fn the_agent_serves_on_a_socket_passed_by_systemd() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    crate::common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let fd = listener.as_raw_fd();
    let kubelet = dir.path().join("kubelet");
    std::fs::create_dir(&kubelet).unwrap();
    // As systemd does: the socket on descriptor 3, LISTEN_PID naming the agent itself.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" serve --socket /nonexistent/volsec.sock --metrics-listen none --allowed-root \"$1\"")
        .arg(env!("CARGO_BIN_EXE_volsec"))
        .arg(&kubelet)
        .env("RUST_LOG", "error");
    // SAFETY: dup2 is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec: clear it instead.
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if ok < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn volsec serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let listed = loop {
        let out = crate::common::volsec()
            .arg("client")
            .arg("--socket")
            .arg(&socket)
            .arg("list")
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("volsec serve exited early with {status:?}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(listed.trim(), "no jobs");
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        socket.exists(),
        "a socket systemd passed stays for the next agent"
    );
}

/// The NetworkPolicy selects the DaemonSet's pods and opens exactly its metrics port, to
/// one namespace, for ingress only.
#[test]
fn the_network_policy_admits_only_the_monitoring_namespace_to_the_metrics_port() {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let policy: NetworkPolicy = serde_yaml::from_str(&read("packaging/networkpolicy.yaml"))
        .expect("packaging/networkpolicy.yaml is a NetworkPolicy");
    let ds = daemonset();
    assert_eq!(policy.metadata.namespace, ds.metadata.namespace);
    let spec = policy.spec.expect("spec");
    assert_eq!(
        spec.pod_selector.and_then(|s| s.match_labels),
        ds.spec.selector.match_labels,
        "the policy selects the agent's pods"
    );
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    let ingress = spec.ingress.expect("ingress rules");
    assert_eq!(ingress.len(), 1);
    let from = ingress[0].from.as_ref().expect("from");
    assert_eq!(from.len(), 1);
    assert!(from[0].pod_selector.is_none() && from[0].ip_block.is_none());
    assert!(from[0].namespace_selector.is_some());

    let container = &ds.spec.template.spec.unwrap().containers[0];
    let metrics = container
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("the metrics port");
    let ports = ingress[0].ports.as_ref().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(
        ports[0].port,
        Some(IntOrString::Int(metrics.container_port))
    );
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
}
