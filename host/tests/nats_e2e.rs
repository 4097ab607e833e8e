//! The NATS bus against real `nats-server`s of the tests' own: two hosts
//! share a queue group and a durable consumer, a server restart loses and
//! doubles nothing, a poison event reaches the dead-letter stream, and a
//! plain NATS client that is not Weft (Python's nats-py) publishes,
//! observes and calls request-reply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{eventually, free_addr, wasm, NatsServer, WeftProcess};
use futures::StreamExt;
use serde_json::{json, Value};
use weft_host::config::Config;
use weft_host::Host;

/// A host on NATS at `url` with the components of `body` (TOML).
async fn host_on(dir: &Path, url: &str, body: &str) -> Host {
    let toml = format!(
        "{header}[bus]\nkind = \"nats\"\nurl = \"{url}\"\n[retry]\nbackoff_ms = 100\n{body}",
        header = common::header(dir),
    );
    Host::start(Config::parse(&toml, dir).unwrap())
        .await
        .unwrap()
}

/// The workflows component serving `workflows.create`, for `runtime.toml`.
fn workflows_block() -> String {
    format!(
        r#"[components.workflows]
wasm = "{workflows}"
serve = ["workflows.create"]
[components.workflows.grants]
publish = ["workflow.created"]
"#,
        workflows = wasm("workflows").display(),
    )
}

fn count(host: &Host, component: &str, sql: &str) -> i64 {
    let db = host.shared().components[component].ctx.db.path().to_owned();
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_request_reply_and_a_durable_consumer_each_message_once() {
    let server = NatsServer::start();
    let body = format!(
        r#"{workflows}[components.alarms]
wasm = "{alarms}"
subscribe = ["alarm.created"]
[components.alarms.grants]
publish = ["alarm.processed"]
"#,
        workflows = workflows_block(),
        alarms = wasm("alarms").display(),
    );
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = host_on(a_dir.path(), &server.url, &body).await;
    let b = host_on(b_dir.path(), &server.url, &body).await;
    const N: usize = 40;
    for i in 0..N {
        let payload = json!({"name": "New Workflow", "buildingId": format!("b{i}")}).to_string();
        let from = if i % 2 == 0 { &a } else { &b };
        let reply = from
            .request("workflows.create", &payload, Duration::from_secs(5))
            .await
            .unwrap();
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["buildingId"], format!("b{i}"));
    }
    let made = |h: &Host| count(h, "workflows", "SELECT count(*) FROM workflows");
    let (on_a, on_b) = (made(&a), made(&b));
    assert_eq!(on_a + on_b, N as i64, "each request handled exactly once");
    assert!(
        on_a > 0 && on_b > 0,
        "one queue group across hosts: {on_a} / {on_b}"
    );

    for i in 0..N {
        let data = json!({"alarmId": format!("a{i}"), "buildingId": "b", "severity": "low", "message": "m"});
        a.publish("alarm.created", data).await.unwrap();
    }
    let processed = |h: &Host| count(h, "alarms", "SELECT count(*) FROM alarms");
    let all = eventually(Duration::from_secs(10), || async {
        let total = processed(&a) + processed(&b);
        (total >= N as i64).then_some(total)
    })
    .await;
    assert_eq!(all, Some(N as i64));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (on_a, on_b) = (processed(&a), processed(&b));
    assert_eq!(
        on_a + on_b,
        N as i64,
        "each event handled once across hosts"
    );
    assert!(
        on_a > 0 && on_b > 0,
        "one durable consumer across hosts: {on_a} / {on_b}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// `POST /source/emit?type=test.flow&n=20`: its status.
async fn emit(host: &Host) -> hyper::StatusCode {
    let request = hyper::Request::post("/source/emit?type=test.flow&n=20")
        .body(bytes::Bytes::new())
        .unwrap();
    host.call(request).await.status()
}

/// `POST /source/emit?type={event_type}&n={n}`, which must succeed.
async fn emit_n(host: &Host, event_type: &str, n: u32) {
    let request = hyper::Request::post(format!("/source/emit?type={event_type}&n={n}"))
        .body(bytes::Bytes::new())
        .unwrap();
    assert_eq!(host.call(request).await.status(), 201);
}

/// A component gets only the event types it subscribes to, with one
/// subject (the server filters) and with several (nats-server before 2.10
/// ignores several filter subjects; the host then drops the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_handles_only_the_events_it_subscribes_to() {
    let server = NatsServer::start();
    for subscribes in [r#""t.one""#, r#""t.one", "t.three""#] {
        let dir = tempfile::tempdir().unwrap();
        let body = common::source_and_sink(
            r#""t.one", "t.two", "t.three""#,
            subscribes,
            r#""faulty.noted""#,
            r#"record_events = "true""#,
        );
        let host = host_on(dir.path(), &server.url, &body).await;
        // One consumer delivers in stream order: by the time the last
        // `t.one` is handled, every `t.two` before it was delivered.
        emit_n(&host, "t.two", 7).await;
        emit_n(&host, "t.three", 2).await;
        emit_n(&host, "t.one", 3).await;
        let wanted = if subscribes.contains("t.three") { 5 } else { 3 };
        let seen = eventually(Duration::from_secs(20), || async {
            let n = count(
                &host,
                "sink",
                "SELECT count(*) FROM seen WHERE event_type = 't.one'",
            );
            (n == 3).then_some(n)
        })
        .await;
        assert_eq!(seen, Some(3), "subscribed to {subscribes}");
        let by_type = count(&host, "sink", "SELECT count(*) FROM seen");
        assert_eq!(by_type, wanted, "subscribed to {subscribes}");
        let sink = host.shared().components["sink"].clone();
        assert_eq!(sink.stats.handled.load(Ordering::Relaxed), wanted as u64);
        host.shutdown().await;
        // The stream outlives the host: the next round's consumer is new.
        let client = async_nats::connect(&server.url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.delete_stream("WEFT_EVENTS").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_while_events_flow_loses_nothing_and_applies_nothing_twice() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("weft_host=info,async_nats=warn")
        .try_init();
    let server = NatsServer::start();
    let port = server.port;
    let dir = tempfile::tempdir().unwrap();
    let body = common::source_and_sink(
        r#""test.flow""#,
        r#""test.flow""#,
        r#""faulty.noted""#,
        r#"record_events = "true""#,
    );
    let host = host_on(dir.path(), &server.url, &body).await;
    let mut acknowledged = 0;
    for _ in 0..10 {
        assert_eq!(emit(&host).await, 201);
        acknowledged += 20;
    }
    // The server dies; requests go on being acknowledged (the events wait
    // in the outbox), and the host reconnects by itself once it is back.
    let store = server.kill();
    for _ in 0..10 {
        assert_eq!(emit(&host).await, 201);
        acknowledged += 20;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let health: Value = serde_json::from_slice(
        host.call(
            hyper::Request::get("/health")
                .body(bytes::Bytes::new())
                .unwrap(),
        )
        .await
        .body(),
    )
    .unwrap();
    assert_eq!(health["bus"]["connected"], false, "{health}");
    let store_path = store.path().to_owned();
    let _server = NatsServer::start_on(port, store);
    for _ in 0..10 {
        assert_eq!(emit(&host).await, 201);
        acknowledged += 20;
    }
    let sink = host.shared().components["sink"].clone();
    let done = eventually(Duration::from_secs(30), || async {
        let seen = count(&host, "sink", "SELECT count(DISTINCT event_id) FROM seen");
        (seen >= acknowledged).then_some(seen)
    })
    .await;
    if done.is_none() {
        eprintln!(
            "{}",
            std::fs::read_to_string(store_path.join(format!("nats-{port}.log")))
                .unwrap_or_default()
        );
        let health = host
            .call(
                hyper::Request::get("/health")
                    .body(bytes::Bytes::new())
                    .unwrap(),
            )
            .await;
        eprintln!(
            "seen {} of {acknowledged}; health {}",
            count(&host, "sink", "SELECT count(DISTINCT event_id) FROM seen"),
            String::from_utf8_lossy(health.body())
        );
    }
    assert_eq!(done, Some(acknowledged), "events lost");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = count(&host, "sink", "SELECT count(*) FROM seen");
    assert_eq!(rows, acknowledged, "events applied twice");
    assert!(host.shared().bus.connected());
    assert!(sink.stats.handled.load(Ordering::Relaxed) >= acknowledged as u64);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_reaches_the_dead_letter_stream_after_three_deliveries() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"[components.sink]
wasm = "{faulty}"
subscribe = ["faulty.poison"]
[components.sink.grants]
publish = ["faulty.noted"]
"#,
        faulty = wasm("faulty").display(),
    );
    let host = host_on(dir.path(), &server.url, &body).await;
    let started = Instant::now();
    let id = host.publish("faulty.poison", json!({})).await.unwrap();
    let client = async_nats::connect(&server.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("WEFT_EVENTS_DLQ").await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let dead = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("no dead letter in the stream")
        .unwrap()
        .unwrap();
    // Backoff 100 ms then 200 ms (± 20 %) between the three deliveries.
    assert!(
        started.elapsed() >= Duration::from_millis(240),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(dead.subject.as_str(), "dlq.sink.faulty.poison");
    let headers = dead.headers.clone().unwrap();
    assert_eq!(headers.get("Weft-Component").unwrap().as_str(), "sink");
    assert_eq!(headers.get("Weft-Attempts").unwrap().as_str(), "3");
    assert!(headers
        .get("Weft-Error")
        .unwrap()
        .as_str()
        .contains("poison"));
    let event: Value = serde_json::from_slice(&dead.payload).unwrap();
    assert_eq!(event["id"], id);
    let sink = host.shared().components["sink"].clone();
    assert_eq!(sink.stats.failed.load(Ordering::Relaxed), 3);
    assert_eq!(sink.ctx.db.dead_letter_count(), 1, "also kept for weft dlq");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.stats.failed.load(Ordering::Relaxed),
        3,
        "delivered again"
    );
    host.shutdown().await;
}

/// What a client nobody on the project wrote does: Python's nats-py.
const PYTHON_CLIENT: &str = r#"
import asyncio, json, sys, uuid
import nats

async def main(url):
    nc = await nats.connect(url)
    seen = []
    traces = {}
    async def on_event(msg):
        event = json.loads(msg.data)
        seen.append(event)
        traces[event["eventType"]] = (msg.headers or {}).get("traceparent")
    await nc.subscribe("events.>", cb=on_event)
    envelope = {"id": str(uuid.uuid4()), "eventType": "user.registered", "source": "python",
                "data": {"userId": "py-1", "username": "py", "email": "py@example.com", "orgId": "o"},
                "timestamp": "2026-12-01T10:00:00Z", "correlationId": "python-1", "causationId": None}
    js = nc.jetstream()
    await js.publish("events.user.registered", json.dumps(envelope).encode(),
                     headers={"Nats-Msg-Id": envelope["id"],
                              "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    reply = await nc.request("workflows.create",
                             json.dumps({"name": "New Workflow", "buildingId": "py-b"}).encode(), timeout=5,
                             headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    def observed():
        account = any(e["eventType"] == "account.created" and e["data"].get("userId") == "py-1"
                      for e in seen)
        workflow = any(e["eventType"] == "workflow.created" for e in seen)
        return account and workflow
    for _ in range(200):
        if observed():
            break
        await asyncio.sleep(0.05)
    print(json.dumps({"reply": json.loads(reply.data), "types": sorted({e["eventType"] for e in seen}),
                      "traces": traces}))
    await nc.close()

asyncio.run(main(sys.argv[1]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_nats_client_publishes_observes_and_calls_request_reply() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        r#"[components.bpm]
wasm = "{bpm}"
subscribe = ["user.registered"]
[components.bpm.grants]
publish = ["account.created", "transaction.completed"]
{workflows}"#,
        bpm = wasm("bpm").display(),
        workflows = workflows_block(),
    );
    let host = host_on(dir.path(), &server.url, &body).await;
    let script = dir.path().join("client.py");
    std::fs::write(&script, PYTHON_CLIENT).unwrap();
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&script)
            .arg(&url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python client failed (pip install nats-py): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["reply"]["buildingId"], "py-b", "{report}");
    assert_eq!(report["reply"]["status"], "pending", "{report}");
    let types = report["types"].as_array().unwrap();
    for t in ["user.registered", "account.created", "workflow.created"] {
        assert!(types.iter().any(|x| x == t), "{t} not observed: {report}");
    }
    // The W3C trace goes on, in the `traceparent` header: same trace id,
    // the span id of the invocation that published the event.
    // (event type, the caller's traceparent it must descend from)
    for (event_type, caller) in [
        (
            "account.created",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        (
            "workflow.created",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ] {
        let got = report["traces"][event_type].as_str().unwrap_or("");
        let (trace_id, span) = (&caller[3..35], &caller[36..52]);
        assert_eq!(got.get(3..35), Some(trace_id), "{event_type}: {report}");
        assert!(got.ends_with("-01"), "{event_type}: {report}");
        assert!(!got.contains(span), "{event_type}: a new span: {report}");
    }
    let accounts = count(
        &host,
        "bpm",
        "SELECT count(*) FROM accounts WHERE owner_user_id = 'py-1'",
    );
    assert_eq!(accounts, 1, "the outside event was processed");
    host.shutdown().await;
}

/// Why a host on `url` with `[bus] stream = "<stream>"` does not start.
async fn start_error(url: &str, stream: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}[bus]\nkind = \"nats\"\nurl = \"{url}\"\nstream = \"{stream}\"\n",
        common::header(dir.path()),
    );
    match Host::start(Config::parse(&toml, dir.path()).unwrap()).await {
        Ok(_) => panic!("the host started on {url} with stream {stream}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_another_shape_is_a_clear_start_error() {
    use async_nats::jetstream::stream;
    let server = NatsServer::start();
    let js = async_nats::jetstream::new(async_nats::connect(&server.url).await.unwrap());
    let other_subjects = stream::Config {
        name: "WEFT_EVENTS".into(),
        subjects: vec!["other.>".into()],
        ..Default::default()
    };
    // The right subjects, but a work queue: one component would take each
    // event from all the others.
    let work_queue = stream::Config {
        name: "QUEUE".into(),
        subjects: vec!["events.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    };
    for (config, says) in [(other_subjects, "events.>"), (work_queue, "workqueue")] {
        js.create_stream(config.clone()).await.unwrap();
        let text = start_error(&server.url, &config.name).await;
        assert!(text.contains(&config.name) && text.contains(says), "{text}");
    }
    let text = start_error("nats://127.0.0.1:1", "WEFT_EVENTS").await;
    assert!(text.contains("cannot connect to NATS"), "{text}");
}

/// `weft run --components <components>` on its own data dir and port.
fn weft_process(config: &Path, data: &Path, components: &str) -> WeftProcess {
    WeftProcess::start(
        config,
        &free_addr(),
        &["--components", components],
        &[("WEFT_DATA_DIR", data.as_os_str())],
        &data.with_extension("log"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_weft_processes_split_the_system_and_share_a_queue_group() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"version = 1
[bus]
kind = "nats"
url = "{url}"
[auth]
keys_dir = "{keys}"
{iam_and_lgm}[components.bpm]
wasm = "{bpm}"
subscribe = ["user.registered"]
[components.bpm.grants]
publish = ["account.created", "transaction.completed"]
[components.nsm]
wasm = "{nsm}"
subscribe = ["user.registered", "account.created"]
[components.nsm.grants]
publish = ["notification.sent"]
push = true
{workflows}"#,
        url = server.url,
        keys = dir.path().join("keys").display(),
        iam_and_lgm = common::iam_and_lgm(),
        bpm = wasm("bpm").display(),
        nsm = wasm("nsm").display(),
        workflows = workflows_block(),
    );
    let file = dir.path().join("runtime.toml");
    std::fs::write(&file, toml).unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    // The first process makes the signing keys; the second finds them.
    let a = weft_process(&file, &data_a, "iam,workflows");
    let client = reqwest::Client::new();
    let up = |base: String| {
        let client = client.clone();
        async move {
            eventually(Duration::from_secs(30), || async {
                let r = client.get(format!("{base}/health")).send().await.ok()?;
                (r.status() == 200).then_some(())
            })
            .await
            .expect("weft did not start");
        }
    };
    up(a.base.clone()).await;
    let b = weft_process(&file, &data_b, "bpm,lgm,nsm,workflows");
    up(b.base.clone()).await;

    // Register on A (IAM); BPM on B opens the account from the event.
    let r = client
        .post(format!("{}/iam/register", a.base))
        .json(&json!({"username": "split", "email": "split@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let login: Value = client
        .post(format!("{}/iam/login", a.base))
        .json(&json!({"username": "split", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap().to_owned();
    let accounts = eventually(Duration::from_secs(10), || async {
        let list: Value = client
            .get(format!("{}/bpm/accounts", b.base))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (list.as_array()?.len() == 1).then_some(list)
    })
    .await;
    assert!(
        accounts.is_some(),
        "B never opened the account A's event asked for"
    );
    let on_a = client
        .get(format!("{}/bpm/accounts", a.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(on_a.status(), 404, "bpm does not run on A");

    // workflows runs on both: one queue group across the two processes.
    let nats = async_nats::connect(&server.url).await.unwrap();
    for i in 0..20 {
        let payload = json!({"name": "New Workflow", "buildingId": format!("b{i}")}).to_string();
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            nats.request("workflows.create", payload.into()),
        )
        .await
        .unwrap()
        .unwrap();
        let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(reply["buildingId"], format!("b{i}"));
    }
    a.stop();
    b.stop();
    let made = |data: &Path| -> i64 {
        let conn = rusqlite::Connection::open(data.join("db/workflows.sqlite")).unwrap();
        conn.query_row("SELECT count(*) FROM workflows", [], |r| r.get(0))
            .unwrap()
    };
    let (on_a, on_b) = (made(&data_a), made(&data_b));
    assert_eq!(on_a + on_b, 20, "each request handled once");
    assert!(
        on_a > 0 && on_b > 0,
        "both processes serve: {on_a} / {on_b}"
    );
}

/// TLS with a CA of the test's own, and a user and password: the host
/// connects and works; a wrong password or an unknown CA is a clear start
/// error, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_password_connect_and_a_wrong_one_is_a_clear_start_error() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(path("server-key.pem"), server_key.serialize_pem()).unwrap();
    let (cert, key) = (path("server.pem"), path("server-key.pem"));
    let store = dir.path().join("store");
    let server = weft_host::nats_server::NatsServer::start_with(
        &store,
        0,
        &[
            "--tls",
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "--user",
            "weft",
            "--pass",
            "s3cret",
        ],
    )
    .unwrap();
    let bus = |password: &str, ca: &str| {
        format!(
            "[bus]\nkind = \"nats\"\nurl = \"tls://127.0.0.1:{port}\"\ntls_required = true\n\
             tls_ca = \"{ca}\"\nuser = \"weft\"\npassword = \"{password}\"\n",
            port = server.port(),
        )
    };
    let body = workflows_block();
    let start = |bus: String, data: &str| {
        let data = dir.path().join(data);
        let toml = format!("{}{bus}{body}", common::header(&data));
        let config = Config::parse(&toml, &data).unwrap();
        async move { Host::start(config).await }
    };
    let host = start(bus("s3cret", &path("ca.pem")), "good")
        .await
        .expect("TLS with the right CA and password");
    let seen = host.subscribe(&["workflow.created"]).await.unwrap();
    let reply = host
        .request(
            "workflows.create",
            r#"{"name":"Over TLS","buildingId":"b-tls"}"#,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(reply.contains("b-tls"), "{reply}");
    let event = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("no event over TLS")
        .unwrap();
    assert_eq!(event.event_type, "workflow.created");
    host.shutdown().await;
    for (bus, why, says) in [
        (
            bus("wrong", &path("ca.pem")),
            "a wrong password",
            "authorization",
        ),
        (
            bus("s3cret", &path("server.pem")),
            "an unknown CA",
            "certificate",
        ),
    ] {
        let started = tokio::time::timeout(Duration::from_secs(20), start(bus, "bad")).await;
        let err = match started {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(_)) => panic!("{why}: the host started"),
            Err(_) => panic!("{why}: the start hung"),
        };
        assert!(
            err.contains("cannot connect to NATS") && err.contains(says),
            "{why}: {err}"
        );
    }
}

/// A host of `body` on `url`, with the signing keys in `keys`.
async fn host_with_keys(dir: &Path, url: &str, keys: &Path, body: &str) -> Host {
    host_on(
        dir,
        url,
        &format!("[auth]\nkeys_dir = \"{}\"\n{body}", keys.display()),
    )
    .await
}

async fn status_of(client: &reqwest::Client, host: &Host, path: &str, token: &str) -> u16 {
    client
        .get(format!("http://{}{path}", host.http_addr().unwrap()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Whether `host` answers `token` with 401 within a second.
async fn refused_within_a_second(client: &reqwest::Client, host: &Host, token: &str) -> bool {
    eventually(Duration::from_secs(1), || async {
        (status_of(client, host, "/bpm/accounts", token).await == 401).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_host_is_refused_by_every_host_on_the_bus() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let bpm = format!(
        "[components.bpm]\nwasm = \"{}\"\nsubscribe = [\"user.registered\"]\n[components.bpm.grants]\npublish = [\"account.created\", \"transaction.completed\"]\n",
        wasm("bpm").display()
    );
    let a = host_with_keys(
        &dir.path().join("a"),
        &server.url,
        &keys,
        &common::iam_and_lgm(),
    )
    .await;
    let b = host_with_keys(&dir.path().join("b"), &server.url, &keys, &bpm).await;
    let client = reqwest::Client::new();
    let base_a = format!("http://{}", a.http_addr().unwrap());
    let r = client
        .post(format!("{base_a}/iam/register"))
        .json(&json!({"username": "nomad", "email": "nomad@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let login = || async {
        let body: Value = client
            .post(format!("{base_a}/iam/login"))
            .json(&json!({"username": "nomad", "password": "correct horse battery"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["accessToken"].as_str().unwrap().to_owned()
    };
    let (token, other) = (login().await, login().await);
    assert_eq!(status_of(&client, &b, "/bpm/accounts", &token).await, 200);

    let r = client
        .post(format!("{base_a}/iam/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        refused_within_a_second(&client, &b, &token).await,
        "host B still took the token 1 s after the logout"
    );
    assert_eq!(status_of(&client, &b, "/bpm/accounts", &other).await, 200);

    // A password change on A: every older token of the user, on B too.
    let survivor = login().await;
    let r = client
        .put(format!("{base_a}/iam/password"))
        .bearer_auth(&survivor)
        .json(&json!({"currentPassword": "correct horse battery", "newPassword": "correct horse battery 2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        refused_within_a_second(&client, &b, &survivor).await,
        "host B still took the token 1 s after the password change"
    );

    // A host that starts later learns both from the stream before it
    // serves; a token of the new password passes.
    let fresh = client
        .post(format!("{base_a}/iam/login"))
        .json(&json!({"username": "nomad", "password": "correct horse battery 2"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = host_with_keys(&dir.path().join("c"), &server.url, &keys, &bpm).await;
    for token in [&token, &other, &survivor] {
        assert_eq!(status_of(&client, &c, "/bpm/accounts", token).await, 401);
    }
    assert_eq!(status_of(&client, &c, "/bpm/accounts", &fresh).await, 200);
    for host in [a, b, c] {
        host.shutdown().await;
    }
}
