//! The agent under pressure and at its edges: `volsec client` outlives an agent that stops
//! right after its job; 1,100 unfinished metrics requests from another user stop neither
//! `/healthz` nor a prepare; a second agent on a live socket refuses; an exiting agent
//! leaves a newer agent's socket alone.

use crate::agent_service::Agent;
use crate::common::*;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

/// An agent told to stop (SIGTERM) while a client's job runs lets the job finish, answers,
/// and exits at once, closing the socket under the client's last frames. The client used to
/// die of SIGPIPE there (exit 141, the result lost) in about half the runs; now it prints
/// the result and exits 0, or says in a sentence that the agent went away.
#[test]
fn the_client_never_dies_of_sigpipe_when_the_agent_stops_after_its_job() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    for d in 0..4 {
        mkdir(&vol.join(format!("d{d}")), 0o755);
        for f in 0..500 {
            std::fs::write(vol.join(format!("d{d}/f{f}")), b"").unwrap();
        }
    }
    let mut results = 0;
    for round in 0..12 {
        let mut agent = Agent::start(fs.path(), &["--shutdown-grace", "20s"]);
        let mut client = volsec()
            .arg("client")
            .arg("--socket")
            .arg(agent.socket())
            .args(["prepare", "--fs-group", &(3000 + round).to_string()])
            .arg(&vol)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(client.stdout.take().unwrap());
        let mut printed = String::new();
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap() > 0 {
            printed.push_str(&line);
            let started = line.starts_with("started job");
            line.clear();
            if started {
                break;
            }
        }
        let stopped = agent.terminate();
        assert!(stopped.success(), "round {round}: the agent exits 0");
        std::io::Read::read_to_string(&mut stdout, &mut printed).unwrap();
        let status = client.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(client.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_ne!(
            status.signal(),
            Some(libc::SIGPIPE),
            "round {round}: the client died of SIGPIPE; it printed: {printed}"
        );
        match status.code() {
            Some(0) => {
                assert!(printed.contains("Complete"), "round {round}: {printed}");
                results += 1;
            }
            Some(2) => assert_eq!(err.trim_end().lines().count(), 1, "round {round}: {err}"),
            other => panic!("round {round}: exit {other:?}: {printed} {err}"),
        }
    }
    assert!(results > 0, "no round got its result");
}

/// 1,100 unfinished requests to the metrics endpoint from an unprivileged user used to take
/// every descriptor of the agent: `/healthz` timed out and `client prepare` hung. Now the
/// endpoint holds at most 64 connections (the rest closed on accept, each held one 5 s
/// at most for its headers): the agent keeps its descriptors, a prepare answers at once,
/// and `/healthz` answers once the slow requests' 5 s are up.
#[test]
fn unfinished_metrics_requests_from_another_user_do_not_stop_the_agent() {
    let fs = Mounted::tmpfs();
    let vol = fs.subdir("vol");
    make_files(&vol);
    let agent = Agent::start(fs.path(), &[]);
    let (helper, connected) = unfinished_requests_as_nobody(agent.metrics, 1_100);
    let descriptors = std::fs::read_dir(format!("/proc/{}/fd", agent.child.id()))
        .unwrap()
        .count();
    let prepared = run_with_timeout({
        let mut c = volsec();
        c.arg("client")
            .arg("--socket")
            .arg(agent.socket())
            .args(["prepare", "--fs-group", "2000"])
            .arg(&vol);
        c
    });
    let started = std::time::Instant::now();
    let mut healthy = false;
    while started.elapsed() < std::time::Duration::from_secs(15) {
        if healthz(agent.metrics) {
            healthy = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(helper);
    assert_eq!(connected, 1_100, "the helper opened every connection");
    assert!(
        descriptors < 400,
        "the agent holds {descriptors} descriptors under 1,100 unfinished requests"
    );
    assert!(
        prepared.status.success(),
        "client prepare answered: {}",
        String::from_utf8_lossy(&prepared.stderr)
    );
    assert!(
        healthy,
        "/healthz never answered under 1,100 unfinished requests"
    );
}

fn make_files(vol: &std::path::Path) {
    for f in 0..20 {
        std::fs::write(vol.join(format!("f{f}")), b"").unwrap();
    }
}

/// A second `volsec serve` on the live socket path refuses in one sentence, and the first
/// agent stays reachable on it: the second used to unlink the socket and bind its own.
#[test]
fn a_second_agent_on_a_live_socket_refuses_and_the_first_stays_reachable() {
    let fs = Mounted::tmpfs();
    let agent = Agent::start(fs.path(), &[]);
    let second = run_with_timeout({
        let mut c = serve(&agent.socket(), fs.path());
        c.env("RUST_LOG", "off");
        c
    });
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one sentence: {err}");
    succeeds(
        volsec()
            .arg("client")
            .arg("--socket")
            .arg(agent.socket())
            .arg("list"),
    );
}

/// An overlapping restart: the old agent's socket was replaced by a new agent's at the same
/// path; when the old one exits it must leave the new socket alone (it used to unlink
/// whatever was at its path, and the new agent stayed ready but unreachable).
#[test]
fn an_exiting_agent_leaves_a_newer_agents_socket_alone() {
    let fs = Mounted::tmpfs();
    let mut old = Agent::start(fs.path(), &[]);
    let socket = old.socket();
    std::fs::remove_file(&socket).unwrap();
    let new = serve(&socket, fs.path())
        .env("RUST_LOG", "off")
        .spawn()
        .unwrap();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _new = Killed(new);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new agent never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(old.terminate().success());
    assert!(
        socket.exists(),
        "the old agent unlinked the new agent's socket"
    );
    succeeds(
        volsec()
            .arg("client")
            .arg("--socket")
            .arg(&socket)
            .arg("list"),
    );
}

/// A Pod manifest near the 3 MiB bound: its annotations take the bytes.
fn huge_pod() -> Vec<u8> {
    let mut pod =
        String::from("apiVersion: v1\nkind: Pod\nmetadata:\n  name: huge\n  annotations:\n");
    let value = "v".repeat(900);
    for i in 0..3_000 {
        pod.push_str(&format!("    a{i}: {value}\n"));
    }
    pod.push_str("spec:\n  securityContext:\n    fsGroup: 2000\n  containers:\n    - name: app\n      image: x\n  volumes:\n    - name: data\n      emptyDir: {}\n");
    pod.into_bytes()
}

/// Two Plan calls with manifests near their bounds used to parse on the runtime's threads
/// and stall every other call (`List` waited 22 s). Parsing now runs on blocking threads:
/// `List` answers while they parse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_huge_plan_calls_do_not_stall_list() {
    use volsec_grpc::agent::proto;
    let fs = Mounted::tmpfs();
    let agent = Agent::start(fs.path(), &[]);
    let pod = huge_pod();
    let started = std::time::Instant::now();
    let mut plans = Vec::new();
    for _ in 0..2 {
        let mut client = agent.client().await;
        let pod = pod.clone();
        plans.push(tokio::spawn(async move {
            client
                .plan(proto::PlanRequest {
                    pod,
                    volume: "data".into(),
                    ..Default::default()
                })
                .await
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut client = agent.client().await;
    let asked = std::time::Instant::now();
    client
        .list(proto::ListRequest {})
        .await
        .expect("List answers");
    let list = asked.elapsed();
    for plan in plans {
        plan.await.unwrap().expect("the Plan call answers");
    }
    let plans = started.elapsed();
    eprintln!("List answered in {list:?}; the two Plan calls took {plans:?}");
    assert!(
        list < std::time::Duration::from_secs(1),
        "List took {list:?} while two Plan calls parsed ({plans:?})"
    );
}
