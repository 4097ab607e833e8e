//! What both bench binaries use: the built components, an HTTP load
//! generator on keep-alive connections, an event pump, percentiles.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use weft_host::bus::{Delivery, Event};
use weft_host::Host;

/// The allocator the `weft` binary uses (see `src/main.rs`), so that the
/// benches measure what runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The tests' helpers for built components and their configs, shared
// rather than copied.
#[path = "../../tests/common.rs"]
mod common;
#[allow(unused_imports)] // not every bench uses both
pub use common::{source_and_sink, wasm};

/// The `p` quantile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Every task's latencies, sorted.
pub async fn gather(tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>) -> Vec<Duration> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

/// A flag that turns true after `secs`.
pub fn after(secs: f64) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        set.store(true, Ordering::Relaxed);
    });
    flag
}

/// What an HTTP load run saw.
pub struct Load {
    /// Requests per second.
    pub rate: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Answers other than 200.
    pub failed: u64,
}

/// `conns` keep-alive connections GETting `path` until `stop`.
pub async fn http_load(
    addr: std::net::SocketAddr,
    path: &str,
    conns: usize,
    stop: Arc<AtomicBool>,
) -> Load {
    let started = Instant::now();
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (path, failed, stop) = (path.to_owned(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let req = hyper::Request::get(path.as_str())
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let t = Instant::now();
                let resp = sender.send_request(req).await.unwrap();
                if resp.status() != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                resp.into_body().collect().await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let all = gather(tasks).await;
    Load {
        rate: all.len() as f64 / started.elapsed().as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        failed: failed.load(Ordering::Relaxed),
    }
}

/// Publishes `n` `bench.tick` events in batches of 256 and waits until
/// `component` has handled them all; events per second.
pub async fn events_per_sec(host: &Host, component: &str, n: u64) -> f64 {
    let shared = host.shared();
    let target = shared.components[component].clone();
    let before = target.stats.handled.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let events: Vec<Delivery> = (0..256.min(n - sent))
            .map(|i| {
                Delivery::untracked(Arc::new(Event {
                    id: weft_host::bus::new_event_id(),
                    event_type: "bench.tick".into(),
                    source: "bench".into(),
                    data: serde_json::json!({"i": sent + i}),
                    timestamp: "2026-11-25T10:00:00Z".into(),
                    correlation_id: "bench".into(),
                    causation_id: None,
                    traceparent: None,
                }))
            })
            .collect();
        sent += events.len() as u64;
        shared.bus.publish(events).await.unwrap();
    }
    while target.stats.handled.load(Ordering::Relaxed) - before < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
