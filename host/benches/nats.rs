//! `cargo bench --bench nats` (part of `just bench`): Weft on NATS against
//! raw `async-nats` and Weft's local bus, in one run on one machine, with a
//! `nats-server -js` of its own:
//! - request-reply: `workflows.create` (the workflows component, 3
//!   replicas) with 16 requests in flight, through Weft on NATS and on the
//!   local bus, with how many requests shared a commit; and `faulty.echo`,
//!   answered without storage or events, through Weft; and a bare
//!   async-nats responder, alone and publishing an event to JetStream per
//!   request as `workflows.create` does;
//! - events: `faulty` publishes 1,000 events per invocation into its outbox,
//!   and a second `faulty` handles each (a row and the inbox), through the
//!   JetStream stream on NATS and through the local bus; and a bare
//!   async-nats JetStream publish → pull → ack loop, with tiny messages and
//!   with messages shaped as Weft's events (envelope and headers).
//!
//! `cargo bench --bench nats -- local` runs only the parts named (`nats`,
//! `local`, `raw`; and of those only `rr` or only `events`), e.g. under a
//! profiler; `WEFT_BENCH_EVENTS=500000` makes the events measures longer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use weft_host::config::Config;
use weft_host::Host;

use support::{percentile, wasm};

const IN_FLIGHT: usize = 16;
const SECONDS: f64 = 5.0;
const EVENTS: u64 = 50_000;

/// Events per events measure: [`EVENTS`], or `WEFT_BENCH_EVENTS` (a longer
/// run, to profile or to read CPU time per event).
fn events() -> u64 {
    std::env::var("WEFT_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(EVENTS)
}
const PER_REQUEST: u64 = 1000;

fn config(dir: &Path, nats: Option<&str>) -> String {
    let bus = match nats {
        Some(url) => format!("[bus]\nkind = \"nats\"\nurl = \"{url}\"\n"),
        None => String::new(),
    };
    format!(
        r#"version = 1
[http]
addr = "127.0.0.1:0"
enabled = false
[data]
dir = "{dir}"
{bus}
[components.workflows]
wasm = "{workflows}"
serve = ["workflows.create"]
replicas = 3
[components.workflows.grants]
publish = ["workflow.created"]
[components.echo]
wasm = "{echo}"
serve = ["faulty.echo"]
[components.echo.grants]
publish = ["faulty.noted"]
{faulty}"#,
        dir = dir.display(),
        workflows = wasm("workflows").display(),
        echo = wasm("faulty").display(),
        faulty = support::source_and_sink(
            r#""bench.durable""#,
            r#""bench.durable""#,
            r#""sink.none""#,
            "",
        ),
    )
}

/// Round trips/s, p50, p99 of `call` with [`IN_FLIGHT`] callers.
async fn round_trips<F, Fut>(call: F) -> (f64, Duration, Duration)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = support::after(SECONDS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..IN_FLIGHT as u64 {
        let (call, stop) = (call.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = worker * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                call(i).await;
                latencies.push(t.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    let all = support::gather(tasks).await;
    (
        all.len() as f64 / started.elapsed().as_secs_f64(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

/// Round trips through Weft to `subject`, whose answer needs no storage
/// when it is `faulty.echo`: the cost of the transport and the instance.
async fn weft_request_reply(host: Arc<Host>, subject: &'static str) -> (f64, Duration, Duration) {
    round_trips(move |i| {
        let host = host.clone();
        async move {
            let payload = format!(r#"{{"name":"New Workflow","buildingId":"b{i}"}}"#);
            host.request(subject, &payload, Duration::from_secs(5))
                .await
                .unwrap();
        }
    })
    .await
}

/// A bare async-nats responder in a queue group. `with_event`: like
/// `workflows.create`, it also publishes an event per request to a
/// JetStream stream, shaped as Weft's ([`shaped_event`]), on a second
/// connection, and answers without waiting for the stream's
/// acknowledgement (a task awaits those), as Weft's outbox relay does.
async fn raw_request_reply(url: &str, with_event: bool) -> (f64, Duration, Duration) {
    use async_nats::jetstream;
    let client = async_nats::connect(url).await.unwrap();
    let mut events = None;
    if with_event {
        let js = jetstream::new(async_nats::connect(url).await.unwrap());
        raw_stream(&js, "RAWRR", "rawrr.>").await;
        let (acks, mut pending) =
            tokio::sync::mpsc::unbounded_channel::<jetstream::context::PublishAckFuture>();
        tokio::spawn(async move {
            while let Some(ack) = pending.recv().await {
                ack.await.unwrap();
            }
        });
        events = Some((js, acks));
    }
    let mut sub = client
        .queue_subscribe("raw.create", "raw".into())
        .await
        .unwrap();
    let responder = client.clone();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some((js, acks)) = &events {
                let (headers, body) = shaped_event();
                let ack = js
                    .publish_with_headers("rawrr.made", headers, body.into())
                    .await
                    .unwrap();
                acks.send(ack).unwrap();
            }
            if let Some(reply) = msg.reply {
                let _ = responder.publish(reply, msg.payload).await;
            }
        }
    });
    round_trips(move |i| {
        let client = client.clone();
        async move {
            let payload = format!(r#"{{"name":"New Workflow","buildingId":"b{i}"}}"#);
            client.request("raw.create", payload.into()).await.unwrap();
        }
    })
    .await
}

/// An event as Weft publishes one: the contract's envelope (about 330
/// bytes), `Nats-Msg-Id` (which the stream keeps for its duplicate window)
/// and the correlation header.
fn shaped_event() -> (async_nats::HeaderMap, String) {
    let id = uuid::Uuid::now_v7().to_string();
    let correlation = uuid::Uuid::new_v4().to_string();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    headers.insert("Weft-Correlation-Id", correlation.as_str());
    let body = format!(
        r#"{{"id":"{id}","eventType":"workflow.created","source":"workflows","data":{{"workflowId":"{id}","buildingId":"b1","name":"New Workflow","status":"pending","handledBy":"workflows-1","orgId":null}},"timestamp":"2026-12-02T10:00:00.000Z","correlationId":"{correlation}","causationId":null}}"#
    );
    (headers, body)
}

/// Creates a file stream over `subjects` with a 2-minute duplicate window,
/// as Weft's event stream.
async fn raw_stream(js: &async_nats::jetstream::Context, name: &str, subjects: &str) {
    use async_nats::jetstream::stream;
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![subjects.into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// Durable events through Weft: published by `source`, handled by `sink`.
async fn weft_events(host: &Arc<Host>, n: u64) -> f64 {
    let sink = host.shared().components["sink"].clone();
    let source = host.shared().components["source"].clone();
    let before = sink.stats.handled.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let host = host.clone();
        tasks.spawn(async move {
            let mut i = worker;
            while i < n / PER_REQUEST {
                let request = hyper::Request::post(format!(
                    "/source/emit?type=bench.durable&n={PER_REQUEST}"
                ))
                .body(bytes::Bytes::new())
                .unwrap();
                assert_eq!(host.call(request).await.status(), 201);
                i += 4;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    while sink.stats.handled.load(Ordering::Relaxed) - before < n || !source.ctx.outbox.is_idle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// A bare JetStream loop: publish `n` (acks awaited together, in pages),
/// pull and ack each. `shaped`: each message as Weft publishes an event
/// ([`shaped_event`]); otherwise a few bytes without headers.
async fn raw_jetstream(url: &str, n: u64, shaped: bool) -> f64 {
    use async_nats::jetstream::{self, consumer};
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let (name, subject) = if shaped {
        ("RAWSHAPED", "rawshaped")
    } else {
        ("RAW", "raw")
    };
    raw_stream(&js, name, &format!("{subject}.>")).await;
    let consumer: consumer::PullConsumer = js
        .get_stream(name)
        .await
        .unwrap()
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut messages = consumer.messages().await.unwrap();
        let mut got = 0;
        while got < n {
            let message = messages.next().await.unwrap().unwrap();
            message.ack().await.unwrap();
            got += 1;
        }
    });
    let subject = format!("{subject}.tick");
    let mut sent = 0;
    while sent < n {
        let mut acks = Vec::new();
        for _ in 0..256.min(n - sent) {
            let ack = if shaped {
                let (headers, body) = shaped_event();
                js.publish_with_headers(subject.clone(), headers, body.into())
                    .await
            } else {
                js.publish(subject.clone(), format!(r#"{{"i":{sent}}}"#).into())
                    .await
            };
            acks.push(ack.unwrap());
            sent += 1;
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    reader.await.unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    assert!(
        wasm("workflows").exists(),
        "run `just build-components` first"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let named_any = |parts: &[&str]| named.iter().any(|n| parts.contains(&n.as_str()));
    let runs = |part: &str| !named_any(&["nats", "local", "raw"]) || named_any(&[part]);
    let measures = |part: &str| !named_any(&["rr", "events"]) || named_any(&[part]);
    let store = tempfile::tempdir().unwrap();
    let server = weft_host::nats_server::NatsServer::start(store.path(), 0).unwrap();
    let url = server.url();
    let mut rows = Vec::new();
    rt.block_on(async {
        for (name, nats) in [("NATS", Some(url.as_str())), ("local bus", None)] {
            if !runs(if nats.is_some() { "nats" } else { "local" }) {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let cfg = Config::parse(&config(dir.path(), nats), dir.path()).unwrap();
            let host = Arc::new(Host::start(cfg).await.unwrap());
            weft_events(&host, 5_000).await; // warm up
            if measures("events") {
                let events = weft_events(&host, events()).await;
                rows.push(format!(
                    "| Weft on the {name}: durable events, component → outbox → bus → component (row + inbox), acked | {events:.0} events/s |"
                ));
            }
            if measures("rr") {
                let workflows = host.shared().components["workflows"].clone();
                let commits = workflows.ctx.db.commits();
                let handled = workflows.stats.handled.load(Ordering::Relaxed);
                let (rt_s, p50, p99) = weft_request_reply(host.clone(), "workflows.create").await;
                let per_commit = (workflows.stats.handled.load(Ordering::Relaxed) - handled) as f64
                    / (workflows.ctx.db.commits() - commits).max(1) as f64;
                rows.push(format!(
                    "| Weft on the {name}: `workflows.create` (3 replicas), {IN_FLIGHT} in flight | {rt_s:.0} round trips/s, p50 {:.3} ms, p99 {:.3} ms; {per_commit:.1} requests per commit |",
                    ms(p50),
                    ms(p99)
                ));
                let (rt_s, p50, p99) = weft_request_reply(host.clone(), "faulty.echo").await;
                rows.push(format!(
                    "| Weft on the {name}: `faulty.echo` (no storage, no event), {IN_FLIGHT} in flight | {rt_s:.0} round trips/s, p50 {:.3} ms, p99 {:.3} ms |",
                    ms(p50),
                    ms(p99)
                ));
            }
            let host = Arc::try_unwrap(host).unwrap_or_else(|_| panic!("host still shared"));
            host.shutdown().await;
        }
        if !runs("raw") {
            return;
        }
        if measures("rr") {
            let (rt_s, p50, p99) = raw_request_reply(&url, false).await;
            rows.push(format!(
                "| raw async-nats request → queue-group responder, {IN_FLIGHT} in flight | {rt_s:.0} round trips/s, p50 {:.3} ms, p99 {:.3} ms |",
                ms(p50),
                ms(p99)
            ));
            let (rt_s, p50, p99) = raw_request_reply(&url, true).await;
            rows.push(format!(
                "| raw async-nats request → responder that also publishes an event to JetStream (as Weft's), {IN_FLIGHT} in flight | {rt_s:.0} round trips/s, p50 {:.3} ms, p99 {:.3} ms |",
                ms(p50),
                ms(p99)
            ));
        }
        if measures("events") {
            let raw = raw_jetstream(&url, events(), false).await;
            rows.push(format!(
                "| raw async-nats JetStream publish (acks per 256) → pull → ack | {raw:.0} events/s |"
            ));
            let raw = raw_jetstream(&url, events(), true).await;
            rows.push(format!(
                "| raw async-nats JetStream, each message shaped as Weft's event (envelope, `Nats-Msg-Id`, correlation header) | {raw:.0} events/s |"
            ));
        }
    });
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    for row in rows {
        println!("{row}");
    }
}
