//! Hot swap: how long a swap takes (from a precompiled, cached component
//! and from a cold compile) and what it does to latency: faulty's p99 under
//! steady HTTP load, alone and with a swap every 50 ms.
//! `cargo bench -p weft_host --bench swap` (part of `just bench`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weft_host::config::Config;
use weft_host::Host;

use support::{after, http_load, percentile, wasm};

/// faulty.wasm with its version text's last byte set to `tag` (see
/// `components/faulty`'s `VERSION`).
fn faulty_version(tag: u8) -> Vec<u8> {
    let marker = b"weft-test-version:1";
    let mut bytes = std::fs::read(wasm("faulty")).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("faulty.wasm without its version text");
    bytes[at + marker.len() - 1] = tag;
    bytes
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "version = 1\n[http]\naddr = \"127.0.0.1:0\"\n[data]\ndir = \"{}\"\n[components.faulty]\nwasm = \"{}\"\nreplicas = 2\n[components.faulty.grants]\npublish = [\"faulty.noted\"]\nrequest = [\"faulty.echo\"]\n",
        dir.path().display(),
        wasm("faulty").display()
    );
    let config = Config::parse(&toml, dir.path()).unwrap();
    rt.block_on(async {
        let host = Host::start(config).await.unwrap();
        let addr = host.http_addr().unwrap();
        let (v1, v2) = (faulty_version(b'1'), faulty_version(b'2'));

        // A version never seen: compiled by cranelift on the spot.
        let cold = host.reload("faulty", Some(faulty_version(b'3'))).await.unwrap();
        assert!(!cold.cached);
        // Both versions compiled once, so the rest load from the cache.
        host.reload("faulty", Some(v2.clone())).await.unwrap();
        host.reload("faulty", Some(v1.clone())).await.unwrap();
        let mut took = Vec::new();
        for i in 0..100 {
            let bytes = if i % 2 == 0 { &v2 } else { &v1 };
            let swapped = host.reload("faulty", Some(bytes.clone())).await.unwrap();
            assert!(swapped.cached);
            took.push(swapped.took);
        }
        took.sort();
        let mut rolled = Vec::new();
        for _ in 0..100 {
            rolled.push(host.rollback("faulty").await.unwrap().took);
        }
        rolled.sort();

        http_load(addr, "/faulty/version", 8, after(1.0)).await; // warm up
        let calm = http_load(addr, "/faulty/version", 8, after(3.0)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let swapping = {
            let (stop, v1, v2) = (stop.clone(), v1.clone(), v2.clone());
            let host = &host;
            async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let bytes = if n % 2 == 0 { &v2 } else { &v1 };
                    host.reload("faulty", Some(bytes.clone())).await.unwrap();
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                n
            }
        };
        let (during, swaps) = tokio::join!(
            async {
                let load = http_load(addr, "/faulty/version", 8, after(3.0)).await;
                stop.store(true, Ordering::Relaxed);
                load
            },
            swapping
        );
        host.shutdown().await;

        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!();
        println!("| measure | result |");
        println!("|---|---|");
        println!("| swap from a cold compile (cranelift) | {:.1} ms |", ms(cold.took));
        println!(
            "| swap from a precompiled (cached) component, 100 swaps: median / p99 / max | {:.2} / {:.2} / {:.2} ms |",
            ms(percentile(&took, 0.5)),
            ms(percentile(&took, 0.99)),
            ms(took[took.len() - 1])
        );
        println!(
            "| rollback (version already in memory), 100: median / max | {:.3} / {:.3} ms |",
            ms(percentile(&rolled, 0.5)),
            ms(rolled[rolled.len() - 1])
        );
        println!(
            "| GET /faulty/version, 8 conns, 3 s: p99 without swaps / with a swap every 50 ms ({swaps} swaps) | {:.3} ms / {:.3} ms ({:+.3} ms) |",
            ms(calm.p99),
            ms(during.p99),
            ms(during.p99) - ms(calm.p99)
        );
        println!(
            "| same runs: req/s without / with swaps; failed requests | {:.0} / {:.0}; {} / {} |",
            calm.rate, during.rate, calm.failed, during.failed
        );
    });
}
