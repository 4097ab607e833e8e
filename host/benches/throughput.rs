//! `just bench`: events/s through the local bus into a wasm handler that
//! writes a row, HTTP requests/s through the gateway into a component (fresh
//! instance per request), instantiation time, start time and idle RSS of the
//! `weft` binary. Prints a table to paste into BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_host::config::Config;
use weft_host::Host;

use support::{after, events_per_sec, gather, http_load, percentile, wasm};

fn config(dir: &Path, extra: &str) -> String {
    let faulty = wasm("faulty").display().to_string();
    format!(
        r#"
version = 1
[http]
addr = "127.0.0.1:0"
[data]
dir = "{}"
[components.faulty]
wasm = "{}"
subscribe = ["bench.tick"]
{extra}
[components.faulty.grants]
publish = ["faulty.noted"]
request = ["faulty.echo"]
[components.iam]
wasm = "{}"
[components.iam.grants]
publish = ["user.*"]
[components.lgm]
wasm = "{}"
subscribe = ["user.*"]
[components.relay]
wasm = "{faulty}"
serve = ["faulty.relay"]
[components.relay.grants]
request = ["faulty.echo"]
[components.echo]
wasm = "{faulty}"
serve = ["faulty.echo"]
[components.echo.grants]
publish = ["faulty.noted"]
"#,
        dir.display(),
        wasm("faulty").display(),
        wasm("iam").display(),
        wasm("lgm").display(),
    )
}

/// The registration flow end to end: IAM (Argon2id m=19 MiB, t=2, p=1) →
/// `user.registered` → BPM default account → `account.created` → NSM
/// notifications and LGM audit. Returns (registrations/s, login ms for a
/// wrong password, login ms for an unknown user).
async fn bench_registration(dir: &Path, n: usize, clients: usize) -> (f64, f64, f64) {
    let toml = format!(
        r#"
version = 1
[http]
addr = "127.0.0.1:0"
[data]
dir = "{}"
[components.iam]
wasm = "{}"
[components.iam.grants]
publish = ["user.*"]
issue_tokens = true
[components.bpm]
wasm = "{}"
subscribe = ["user.registered"]
[components.bpm.grants]
publish = ["account.created"]
[components.nsm]
wasm = "{}"
subscribe = ["user.registered", "account.created"]
[components.nsm.grants]
publish = ["notification.sent"]
push = true
[components.lgm]
wasm = "{}"
subscribe = ["*"]
"#,
        dir.display(),
        wasm("iam").display(),
        wasm("bpm").display(),
        wasm("nsm").display(),
        wasm("lgm").display(),
    );
    let host = Host::start(Config::parse(&toml, dir).unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", host.http_addr().unwrap());
    let client = reqwest::Client::new();
    let nsm = host.shared().components["nsm"].clone();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, base, next) = (client.clone(), base.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    break;
                }
                let r = client
                    .post(format!("{base}/iam/register"))
                    .json(&serde_json::json!({"username": format!("user{i}"), "email": format!("user{i}@example.com"), "password": "correct horse battery"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Done when NSM has handled both events of every registration.
    while nsm.stats.handled.load(Ordering::Relaxed) < 2 * n as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let login = |user: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let t = Instant::now();
            for _ in 0..20 {
                let r = client
                    .post(format!("{base}/iam/login"))
                    .json(&serde_json::json!({"username": user, "password": "wrong password!"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 401);
            }
            t.elapsed().as_secs_f64() * 1e3 / 20.0
        }
    };
    let wrong = login("user0").await;
    let unknown = login("nobody").await;
    host.shutdown().await;
    (rate, wrong, unknown)
}

/// Request-reply through two components: the bench asks `faulty.relay`
/// (component `relay`), which asks `faulty.echo` (component `echo`) and
/// returns its answer. `in_flight` requesters for `secs` seconds.
async fn bench_request_reply(
    host: &Host,
    in_flight: usize,
    secs: u64,
) -> (f64, Duration, Duration) {
    let bus = host.shared().bus.clone();
    let stop_at = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < stop_at {
                let t = Instant::now();
                let reply = bus
                    .request(
                        "faulty.relay",
                        "{}".into(),
                        "bench".into(),
                        None,
                        Duration::from_secs(5),
                    )
                    .await
                    .unwrap();
                assert!(reply.contains("faulty.echo"), "{reply}");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let all = gather(tasks).await;
    (
        all.len() as f64 / secs as f64,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

async fn bench_instantiate(host: &Host, n: u32) -> Duration {
    let faulty = host.shared().components["faulty"].clone();
    let start = Instant::now();
    for _ in 0..n {
        faulty.migrations(faulty.current()).await.unwrap();
    }
    start.elapsed() / n
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Starts the real `weft` binary twice on the same data dir (the second
/// start uses cached compiled components); returns (start ms, idle RSS MiB).
fn bench_binary(dir: &Path) -> (f64, f64) {
    use std::io::BufRead;
    let toml = dir.join("runtime.toml");
    std::fs::write(&toml, config(&dir.join("data"), "")).unwrap();
    let mut result = (0.0, 0.0);
    for _ in 0..2 {
        let start = Instant::now();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["run", "--config"])
            .arg(&toml)
            .env("WEFT_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started = start.elapsed().as_secs_f64() * 1e3;
        std::thread::sleep(Duration::from_millis(500));
        let rss = rss_kib(child.id()) as f64 / 1024.0;
        let _ = std::process::Command::new("kill")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
        result = (started, rss);
    }
    result
}

fn main() {
    for name in ["faulty", "iam", "lgm", "bpm", "nsm"] {
        assert!(wasm(name).exists(), "run `just build-components` first");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (start_ms, rss) = bench_binary(dir.path());
    let extra = std::env::var("BENCH_EXTRA")
        .unwrap_or_default()
        .replace("\\n", "\n");
    let cfg = Config::parse(&config(&dir.path().join("data"), &extra), dir.path()).unwrap();
    rt.block_on(async {
        let host = Host::start(cfg).await.unwrap();
        let addr = host.http_addr().unwrap();
        let inst = bench_instantiate(&host, 2000).await;
        events_per_sec(&host, "faulty", 5_000).await; // warm up
        let events = events_per_sec(&host, "faulty", 100_000).await;
        http_load(addr, "/faulty/ok", 32, after(1.0)).await; // warm up
        let load = http_load(addr, "/faulty/ok", 32, after(5.0)).await;
        assert_eq!(load.failed, 0);
        let (rps, p50, p99) = (load.rate, load.p50, load.p99);
        bench_request_reply(&host, 16, 1).await; // warm up
        let (rr, rr50, rr99) = bench_request_reply(&host, 16, 5).await;
        host.shutdown().await;
        let (regs, wrong_ms, unknown_ms) =
            bench_registration(&dir.path().join("registration"), 200, 8).await;
        println!();
        println!("| measure | result |");
        println!("|---|---|");
        println!("| instantiate + call a trivial export | {:.1} µs |", inst.as_secs_f64() * 1e6);
        println!("| events/s, local bus → wasm handler writing 1 row (savepoint each, group commit) | {events:.0} |");
        println!("| HTTP GET /faulty/ok, 32 connections, fresh instance each | {rps:.0} req/s, p50 {:.2} ms, p99 {:.2} ms |", p50.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3);
        println!("| request-reply through two components (relay → echo), 16 in flight | {rr:.0} round trips/s, p50 {:.3} ms, p99 {:.3} ms |", rr50.as_secs_f64() * 1e3, rr99.as_secs_f64() * 1e3);
        println!("| `weft` start, cached components (5) → listening | {start_ms:.0} ms |");
        println!("| `weft` idle RSS, 5 components loaded | {rss:.1} MiB |");
        println!("| registrations/s end to end (8 clients; IAM Argon2id m=19 MiB t=2 p=1 → BPM account → NSM ×2 → LGM) | {regs:.1} |");
        println!("| login 401: wrong password vs unknown user | {wrong_ms:.1} ms vs {unknown_ms:.1} ms |");
    });
}
