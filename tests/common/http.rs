//! The agent's and the CSI proxy's HTTP endpoints (`/metrics`, `/healthz`, `/readyz`), asked
//! as Prometheus and kubelet's probes ask: one plain HTTP/1.1 GET per connection.

use std::io::{Read, Write};
use std::time::Duration;

/// GET `path` on 127.0.0.1:`port`: (status, body), or (0, "") when nothing answers (no
/// listener, a connection closed on accept, no response within 5 s).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    if s.read_to_string(&mut out).is_err() {
        return (0, String::new());
    }
    let status = out
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Whether `/healthz` answers 200; a connection closed on accept (the endpoint full) is no.
pub fn healthz(port: u16) -> bool {
    http_get(port, "/healthz").0 == 200
}
