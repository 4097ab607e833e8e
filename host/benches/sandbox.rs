//! What the sandbox costs and how well it holds: throughput with and without
//! epoch interruption and store limits, how late a `loop {}` guest is
//! stopped, and how much a storm of 1,000 trapping calls moves another
//! component's latency. `cargo bench -p weft_host --bench sandbox` (part of
//! `just bench`); prints Markdown rows for BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use weft_host::config::Config;
use weft_host::engine::Sandbox;
use weft_host::Host;

use support::{after, events_per_sec, http_load, percentile, wasm};

fn config(dir: &Path) -> Config {
    let toml = format!(
        r#"
version = 1
[http]
addr = "127.0.0.1:0"
[data]
dir = "{}"
[components.faulty]
wasm = "{}"
subscribe = ["bench.tick"]
[components.faulty.grants]
publish = ["faulty.noted"]
request = ["faulty.echo"]
[components.hostile]
wasm = "{}"
[components.hostile.limits]
timeout_ms = 100
[components.hostile.grants]
publish = ["hostile.*"]
push = true
"#,
        dir.display(),
        wasm("faulty").display(),
        wasm("hostile").display(),
    );
    Config::parse(&toml, dir).unwrap()
}

/// Faulty's p99 (4 connections) while 8 connections make 1,000 calls of
/// `path` on hostile (each answering `status`), `pace` apart per
/// connection; and how long the storm took.
async fn p99_during_storm(
    addr: std::net::SocketAddr,
    path: &'static str,
    status: u16,
    pace: Option<Duration>,
) -> (Duration, Duration) {
    let started = Instant::now();
    let over = Arc::new(AtomicBool::new(false));
    let done = over.clone();
    let storm = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                for _ in 0..125 {
                    let req = hyper::Request::get(path)
                        .header("host", "bench")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let resp = sender.send_request(req).await.unwrap();
                    assert_eq!(resp.status(), status);
                    resp.into_body().collect().await.unwrap();
                    if let Some(pace) = pace {
                        tokio::time::sleep(pace).await;
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        done.store(true, Ordering::Relaxed);
        started.elapsed()
    });
    let load = http_load(addr, "/faulty/ok", 4, over).await;
    assert_eq!(load.failed, 0);
    (load.p99, storm.await.unwrap())
}

/// Rounds of the with/without comparison.
const ROUNDS: usize = 3;

/// HTTP req/s and events/s under one sandbox setting.
async fn throughput(dir: &Path, sandbox: Sandbox) -> (f64, f64) {
    let host = Host::start_with_sandbox(config(dir), sandbox)
        .await
        .unwrap();
    let addr = host.http_addr().unwrap();
    http_load(addr, "/faulty/ok", 32, after(1.0)).await; // warm up
    let rps = http_load(addr, "/faulty/ok", 32, after(4.0)).await.rate;
    events_per_sec(&host, "faulty", 5_000).await; // warm up
    let eps = events_per_sec(&host, "faulty", 60_000).await;
    host.shutdown().await;
    (rps, eps)
}

fn main() {
    for name in ["faulty", "hostile"] {
        assert!(wasm(name).exists(), "run `just build-components` first");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let settings = [
            ("epoch interruption + store limits (the default)", Sandbox::default()),
            ("epoch interruption, no store limits", Sandbox { epoch_interruption: true, store_limits: false }),
            ("neither", Sandbox { epoch_interruption: false, store_limits: false }),
        ];
        // Rounds interleaved, so drift on a shared machine hits all alike.
        let mut results = vec![(0.0, 0.0); settings.len()];
        for round in 0..ROUNDS {
            for (i, (_, sandbox)) in settings.iter().enumerate() {
                let (rps, eps) = throughput(&dir.path().join(format!("t{round}{i}")), *sandbox).await;
                results[i].0 += rps / ROUNDS as f64;
                results[i].1 += eps / ROUNDS as f64;
            }
        }

        let host = Host::start(config(&dir.path().join("guards"))).await.unwrap();
        let addr = host.http_addr().unwrap();
        // How late a spinning guest is stopped after its 100 ms deadline.
        let client = reqwest::Client::new();
        let mut late = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let r = client.get(format!("http://{addr}/hostile/loop")).send().await.unwrap();
            assert_eq!(r.status(), 500);
            late.push(t.elapsed().saturating_sub(Duration::from_millis(100)));
        }
        late.sort();
        // Another component's p99 alone, then during 1,000 trapping calls.
        http_load(addr, "/faulty/ok", 4, after(1.0)).await; // warm up
        let calm_p99 = http_load(addr, "/faulty/ok", 4, after(3.0)).await.p99;
        // Paced: 1,000 traps spread over about 2 s, the shape of a
        // component failing on every call under steady traffic.
        let (paced_p99, paced_took) =
            p99_during_storm(addr, "/hostile/trap", 500, Some(Duration::from_millis(16))).await;
        // Flat out: 1,000 traps as fast as 8 connections go, against the same
        // storm of successful calls (what saturating both cores costs anyway).
        let (trap_p99, trap_took) = p99_during_storm(addr, "/hostile/trap", 500, None).await;
        let (ok_p99, ok_took) = p99_during_storm(addr, "/hostile/ok", 200, None).await;
        host.shutdown().await;

        println!();
        println!("| sandbox setting | HTTP GET req/s (32 conns) | events/s |");
        println!("|---|---|---|");
        for ((name, _), (rps, eps)) in settings.iter().zip(&results) {
            println!("| {name} | {rps:.0} | {eps:.0} |");
        }
        let (base_rps, base_eps) = results[2];
        println!(
            "| cost of both guards | {:+.1} % | {:+.1} % |",
            (results[0].0 / base_rps - 1.0) * 100.0,
            (results[0].1 / base_eps - 1.0) * 100.0
        );
        println!();
        println!("| measure | result |");
        println!("|---|---|");
        println!(
            "| `loop {{}}` stopped after its 100 ms deadline + (median / max of 20) | {:.1} ms / {:.1} ms |",
            percentile(&late, 0.5).as_secs_f64() * 1e3,
            late[late.len() - 1].as_secs_f64() * 1e3
        );
        let row = |what: &str, p99: Duration, took: Duration| {
            println!(
                "| faulty p99 (4 conns) during {what} (took {:.2} s) | {:.3} ms ({:+.0} % vs alone) |",
                took.as_secs_f64(),
                p99.as_secs_f64() * 1e3,
                (p99.as_secs_f64() / calm_p99.as_secs_f64() - 1.0) * 100.0
            )
        };
        println!("| faulty p99 (4 conns) alone, 3 s | {:.3} ms |", calm_p99.as_secs_f64() * 1e3);
        row("1,000 trapping calls paced over ~2 s (8 conns)", paced_p99, paced_took);
        row("1,000 trapping calls flat out (8 conns)", trap_p99, trap_took);
        row("1,000 successful calls flat out (8 conns)", ok_p99, ok_took);
    });
}
