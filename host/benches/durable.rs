//! `cargo bench --bench durable` (part of `just bench`): durable events per
//! second on the local bus, the whole way: a component publishes events
//! (written to its outbox in its transaction), the relay hands them to the
//! bus, a subscriber handles each (a row written, the event id in its inbox,
//! group commit), the receipts settle and the outbox is pruned. Run with
//! `synchronous = NORMAL` (the default) and `FULL`, next to events put on
//! the bus directly (no outbox) as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_host::config::Config;
use weft_host::Host;

use support::{events_per_sec, wasm};

/// Events each `POST /source/emit` publishes (one invocation).
const PER_REQUEST: u64 = 1000;

fn config(dir: &Path, synchronous: &str) -> String {
    let faulty = support::source_and_sink(
        r#""bench.durable""#,
        r#""bench.durable", "bench.tick""#,
        r#""sink.none""#,
        "",
    );
    format!(
        r#"
version = 1
[http]
addr = "127.0.0.1:0"
enabled = false
[data]
dir = "{dir}"
synchronous = "{synchronous}"
{faulty}"#,
        dir = dir.display(),
    )
}

/// `n` events published by `source` in invocations of [`PER_REQUEST`]
/// (up to 4 at once) until `sink` handled them all and every outbox row is
/// settled; events per second.
async fn durable_events_per_sec(host: &Arc<Host>, n: u64) -> f64 {
    let shared = host.shared();
    let sink = shared.components["sink"].clone();
    let source = shared.components["source"].clone();
    let before = sink.stats.handled.load(Ordering::Relaxed);
    let started = Instant::now();
    let requests = n / PER_REQUEST;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let host = host.clone();
        tasks.spawn(async move {
            let mut i = worker;
            while i < requests {
                emit(&host).await;
                i += 4;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    while sink.stats.handled.load(Ordering::Relaxed) - before < requests * PER_REQUEST
        || !source.ctx.outbox.is_idle()
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (requests * PER_REQUEST) as f64 / started.elapsed().as_secs_f64()
}

/// `POST /source/emit?type=bench.durable&n=…`, in process.
async fn emit(host: &Host) {
    let request = hyper::Request::post(format!("/source/emit?type=bench.durable&n={PER_REQUEST}"))
        .body(bytes::Bytes::new())
        .unwrap();
    let response = host.call(request).await;
    assert_eq!(response.status(), 201, "{:?}", response.body());
}

fn main() {
    assert!(wasm("faulty").exists(), "run `just build-components` first");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for synchronous in ["normal", "full"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::parse(&config(dir.path(), synchronous), dir.path()).unwrap();
        rt.block_on(async {
            let host = Arc::new(Host::start(cfg).await.unwrap());
            durable_events_per_sec(&host, 10_000).await; // warm up
            let durable = durable_events_per_sec(&host, 100_000).await;
            rows.push(format!(
                "| durable: component → outbox → relay → handler (row + inbox), synchronous={synchronous} | {durable:.0} |"
            ));
            if synchronous == "normal" {
                events_per_sec(&host, "sink", 5_000).await; // warm up
                let direct = events_per_sec(&host, "sink", 100_000).await;
                rows.push(format!(
                    "| events put on the bus directly (no outbox) → handler (row + inbox), synchronous={synchronous} | {direct:.0} |"
                ));
            }
            let host = Arc::try_unwrap(host).unwrap_or_else(|_| panic!("host still shared"));
            host.shutdown().await;
        });
    }
    println!();
    println!("| measure | events/s |");
    println!("|---|---|");
    for row in rows {
        println!("{row}");
    }
}
