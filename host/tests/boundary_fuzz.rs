//! Property tests of the host's HTTP boundary, over raw TCP against a real
//! host: random bytes, random requests, random tokens. The host must answer
//! (or close) every one, never with a failure of its own, and stay up.
//!
//! Bounded in `just test` (proptest's default case count); `just fuzz` runs
//! them with many more cases through `PROPTEST_CASES`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;

use common::TestHost;

/// One host for every case of every property in this file, on a runtime
/// of its own (proptest's cases are synchronous).
fn host() -> SocketAddr {
    static HOST: OnceLock<(tokio::runtime::Runtime, TestHost)> = OnceLock::new();
    let (_, t) = HOST.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let t = rt.block_on(TestHost::start());
        (rt, t)
    });
    t.base.trim_start_matches("http://").parse().unwrap()
}

/// Writes `request`, reads until the host closes (every request here says
/// `Connection: close`) or `wait` passes; `None` without a response, which
/// is allowed for garbage (the host may wait for the rest of a request).
fn exchange_within(request: &[u8], wait: Duration) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(host()).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    // The host may close early on garbage; a failed write is then fine. The
    // write side stays open: a half-closed client gets no answer from hyper.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body_at = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some((status, response[body_at..].to_vec()))
}

fn exchange(request: &[u8]) -> Option<(u16, Vec<u8>)> {
    exchange_within(request, Duration::from_secs(10))
}

fn host_is_up() -> bool {
    exchange(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_some_and(|(status, _)| status == 200)
}

/// A request with a correct Content-Length and `Connection: close`.
fn request(method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Percent-encodes everything but unreserved characters.
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (*b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn header() -> impl Strategy<Value = (String, String)> {
    ("x-[a-z0-9-]{1,20}", "[ -~]{0,60}").prop_map(|(n, v)| (n, v.trim().to_owned()))
}

proptest! {
    // Anything at all on the socket: an answer or a close, never a crash.
    #[test]
    fn arbitrary_bytes_leave_the_host_up(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Some((status, _)) = exchange_within(&bytes, Duration::from_millis(300)) {
            prop_assert!(status < 500, "status {status}");
        }
        prop_assert!(host_is_up());
    }

    // Mangled request lines and headers around a real route.
    #[test]
    fn mangled_requests_get_4xx_not_5xx(
        method in prop_oneof![Just("GET".to_owned()), Just("POST".to_owned()), "[A-Z]{1,12}", "[!-~]{1,8}"],
        target in prop_oneof![Just("/faulty/echo".to_owned()), "/[!-~]{0,80}", "[!-~]{1,40}"],
        junk_header in "[!-~ ]{0,80}",
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{junk_header}\r\n").into_bytes();
        bytes.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        bytes.extend_from_slice(&body);
        if let Some((status, _)) = exchange(&bytes) {
            prop_assert!(status < 500, "status {status} for {method} {target}");
        }
        prop_assert!(host_is_up());
    }

    // Well-formed requests reach the component exactly as sent.
    #[test]
    fn the_component_sees_path_query_headers_and_body_as_sent(
        segments in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..12), 0..4),
        query in prop::collection::vec(("[a-z]{1,6}", prop::collection::vec(any::<u8>(), 0..12)), 0..4),
        headers in prop::collection::vec(header(), 0..6),
        body in "[ -~]{0,300}",
        post in any::<bool>(),
    ) {
        let path: String = segments.iter().map(|s| format!("/{}", encode(s))).collect();
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        let query = query.join("&");
        let target = if query.is_empty() {
            format!("/faulty/echo{path}")
        } else {
            format!("/faulty/echo{path}?{query}")
        };
        let method = if post { "POST" } else { "GET" };
        let Some((status, raw)) = exchange(&request(method, &target, &headers, body.as_bytes())) else {
            return Err(TestCaseError::fail("no response"));
        };
        if path.is_empty() {
            // `/faulty/echo` itself is the echo route.
            prop_assert_eq!(status, if post { 404 } else { 200 });
        } else {
            // Below /echo nothing is routed: faulty's own 404.
            prop_assert_eq!(status, 404);
            return Ok(());
        }
        if post {
            return Ok(());
        }
        let echo: Value = serde_json::from_slice(&raw).unwrap();
        prop_assert_eq!(&echo["path"], "/echo");
        prop_assert_eq!(echo["query"].as_str(), Some(query.as_str()));
        prop_assert_eq!(echo["body"].as_str(), Some(body.as_str()));
        for (name, value) in &headers {
            // A repeated header keeps its last value in the echo.
            let last = headers.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v);
            prop_assert_eq!(echo["headers"][name].as_str(), last.map(String::as_str), "{}: {}", name, value);
        }
    }

    // A bearer token nobody issued is 401 at the gateway, whatever its shape.
    #[test]
    fn forged_tokens_are_401(
        parts in prop::collection::vec("[A-Za-z0-9_-]{0,40}", 1..5),
        scheme in prop_oneof![Just("Bearer"), Just("bearer"), Just("Basic"), Just("")],
    ) {
        let token = parts.join(".");
        let headers = vec![("Authorization".to_owned(), format!("{scheme} {token}").trim().to_owned())];
        let Some((status, raw)) = exchange(&request("GET", "/faulty/echo", &headers, b"")) else {
            return Err(TestCaseError::fail("no response"));
        };
        prop_assert_eq!(status, 401);
        let body: Value = serde_json::from_slice(&raw).unwrap();
        prop_assert_eq!(&body["error"]["code"], "unauthorized");
    }
}
