//! The gateway sheds slow and greedy clients (`[http]`): stalled
//! connections from one address cannot starve others, heads and bodies
//! must arrive in time, heads are capped in size, a user holds a bounded
//! number of WebSockets, and a socket ends when it falls silent or its
//! token expires. Also: what the host writes in its data directory is for
//! its own user only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::TestHost;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// A host with the test config and `http` keys added to its `[http]`.
async fn host_with(http: &str) -> TestHost {
    let dir = tempfile::tempdir().unwrap();
    let toml = common::test_config(dir.path()).replace(
        "max_body_bytes = 65536\n",
        &format!("max_body_bytes = 65536\n{http}\n"),
    );
    TestHost::start_toml(dir, &toml).await
}

fn addr(t: &TestHost) -> SocketAddr {
    t.base.trim_start_matches("http://").parse().unwrap()
}

/// A connection to the gateway from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// What the server sends until it closes the connection (or `wait` ends).
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_from_one_address_leave_health_answering() {
    // The shipped defaults: 1024 connections, 256 per address.
    let t = TestHost::start().await;
    let to = addr(&t);
    let mut stalled = Vec::new();
    for _ in 0..1100 {
        let mut s = connect_from([127, 0, 0, 2], to).await.unwrap();
        // Half a request, then nothing.
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    // Every connection past the address's 256 was told so and closed.
    let mut refused = 0;
    for s in stalled.iter_mut().skip(900) {
        if let Some(answer) = read_until_closed(s, Duration::from_secs(2)).await {
            let text = String::from_utf8_lossy(&answer);
            assert!(text.starts_with("HTTP/1.1 429"), "{text}");
            assert!(text.contains("too_many_requests"), "{text}");
            refused += 1;
        }
    }
    assert_eq!(refused, 200, "the last 200 connections are over the cap");

    let started = Instant::now();
    let health = tokio::time::timeout(
        Duration::from_secs(1),
        t.client.get(t.url("/health")).send(),
    )
    .await
    .expect("/health within 1 s while 1,100 clients stall")
    .unwrap();
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    // Another address still gets its own connections.
    let mut other = connect_from([127, 0, 0, 3], to).await.unwrap();
    other
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut other, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    drop(stalled);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_and_bodies_must_arrive_in_time_and_heads_are_capped() {
    let t = host_with("header_timeout_ms = 500\nbody_timeout_ms = 500").await;
    let to = addr(&t);

    // A head that stops halfway: the connection is closed after the timeout.
    let mut slow = TcpStream::connect(to).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    read_until_closed(&mut slow, Duration::from_secs(5))
        .await
        .expect("closed after the header timeout");
    assert!(started.elapsed() >= Duration::from_millis(400));

    // A kept-alive connection that sends no next request is closed too.
    let mut idle = TcpStream::connect(to).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle kept-alive connection is closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() >= Duration::from_millis(400));

    // A body that stops halfway: 408, before the component ever runs.
    let mut stalled = TcpStream::connect(to).await.unwrap();
    stalled
        .write_all(
            b"POST /iam/register HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"username\":",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut stalled, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");

    // A 64 KB header: 431, and the host goes on.
    let big = "a".repeat(64 << 10);
    let r = t
        .client
        .get(t.url("/health"))
        .header("x-big", big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let r = t.client.get(t.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_at_most_16_websockets() {
    let t = TestHost::start().await;
    let (_, token) = t.user("wanda").await;
    let url = format!(
        "{}/nsm/ws?access_token={token}",
        t.base.replace("http://", "ws://")
    );
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(
            tokio_tungstenite::connect_async(url.as_str())
                .await
                .unwrap()
                .0,
        );
    }
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            assert!(resp.headers().contains_key("retry-after"));
        }
        other => panic!("the 17th socket: expected 429, got {:?}", other.map(|_| ())),
    }
    // Another user is not held back by this one.
    let (_, other) = t.user("walter").await;
    let other_url = url.replace(&token, &other);
    let (_other_ws, _) = tokio_tungstenite::connect_async(other_url.as_str())
        .await
        .unwrap();
    // A closed socket frees its place.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    let again = common::eventually(Duration::from_secs(5), || async {
        tokio_tungstenite::connect_async(url.as_str()).await.ok()
    })
    .await;
    assert!(
        again.is_some(),
        "a place freed by a closed socket is taken again"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_and_a_live_one_is_kept() {
    let t = host_with("websocket_ping_secs = 1\nwebsocket_idle_secs = 2").await;
    let (_, token) = t.user("sally").await;
    let ws_base = t.base.replace("http://", "ws://");
    let (mut live, _) =
        tokio_tungstenite::connect_async(format!("{ws_base}/nsm/ws?access_token={token}"))
            .await
            .unwrap();
    // A client that reads (and so answers pings) all along.
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(message)) = tokio::time::timeout_at(until, live.next()).await {
            match message.unwrap() {
                Message::Ping(_) => pings += 1,
                Message::Close(frame) => panic!("a live socket was closed: {frame:?}"),
                _ => {}
            }
        }
        live.send(Message::Close(None)).await.unwrap();
        pings
    });

    // A raw client that upgrades, then never answers a ping.
    let mut silent = TcpStream::connect(addr(&t)).await.unwrap();
    silent
        .write_all(
            format!(
                "GET /nsm/ws?access_token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut silent, Duration::from_secs(4))
        .await
        .expect("a silent socket is closed");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"));
    assert!(started.elapsed() >= Duration::from_millis(1500));

    // The client that reads is still there, past several idle periods.
    let pings = reader.await.unwrap();
    assert!(pings >= 3, "pinged every second: {pings}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_whose_token_expires_is_closed_with_policy_violation() {
    let dir = tempfile::tempdir().unwrap();
    let toml =
        common::test_config(dir.path()).replace("[retry]", "[auth]\ntoken_ttl_secs = 2\n[retry]");
    let t = TestHost::start_toml(dir, &toml).await;
    let (_, token) = t.user("ernie").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}/nsm/ws?access_token={token}",
        t.base.replace("http://", "ws://")
    ))
    .await
    .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        while let Some(message) = ws.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame;
            }
        }
        None
    })
    .await
    .expect("closed once the token expired")
    .expect("with a close frame");
    assert_eq!(closed.code, CloseCode::Policy);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_for_the_hosts_user_only() {
    let t = TestHost::start().await;
    let (_, _token) = t.user("fiona").await;
    let data = t.dir.path();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut files = 0;
    let mut stack = vec![data.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                stack.push(path);
            } else if name.ends_with(".sqlite")
                || name.ends_with("-wal")
                || name.ends_with("-shm")
                || name.ends_with(".pem")
                || path.parent().is_some_and(|p| p.ends_with("cache"))
            {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                files += 1;
            }
        }
    }
    assert!(
        files >= 6,
        "databases, keys and compiled code were checked: {files}"
    );
    t.stop().await;
}
