//! Nothing lost, nothing applied twice: the outbox delivers what a run
//! committed and did not deliver, the inbox skips what a subscriber handled
//! already, a poison event becomes a dead letter after its retries and can
//! be replayed from the admin API and the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{eventually, free_addr, TestHost, WeftProcess};
use serde_json::{json, Value};

/// `source` publishes `faulty.noted` (POST /source/note); `sink` handles
/// `test.*` and `faulty.*` events by storing a note named after the type.
fn config(dir: &Path, extra: &str) -> String {
    format!(
        r#"{header}[retry]
attempts = 3
backoff_ms = 100
jitter_percent = 20
{iam_and_lgm}{faulty}{extra}
"#,
        header = common::header(dir),
        iam_and_lgm = common::iam_and_lgm(),
        faulty = common::source_and_sink(
            r#""faulty.noted""#,
            r#""test.>", "faulty.noted", "faulty.poison""#,
            r#""faulty.noted""#,
            "",
        ),
    )
}

/// How long settled rows may stay in an outbox: on NATS they are kept for
/// the 10 s resend window first.
fn prune_wait() -> Duration {
    if common::over_nats() {
        Duration::from_secs(16)
    } else {
        Duration::from_secs(5)
    }
}

fn db(dir: &Path, component: &str) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("db").join(format!("{component}.sqlite"))).unwrap()
}

fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn envelope(id: &str, event_type: &str) -> String {
    json!({
        "id": id, "eventType": event_type, "source": "source", "data": {},
        "timestamp": "2026-11-25T10:00:00Z", "correlationId": "crash", "causationId": null
    })
    .to_string()
}

async fn notes(t: &TestHost, component: &str, body: &str) -> usize {
    let rows: Vec<Value> = t.json(&format!("/{component}/notes")).await;
    rows.iter().filter(|n| n["body"] == body).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_run_committed_and_did_not_deliver_is_delivered_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let toml = config(dir.path(), "");
    // A first run creates the databases.
    let t = TestHost::start_toml(dir, &toml).await;
    let dir = t.stop().await;
    // As if it had crashed after committing three events and before the
    // relay handed them on: rows in the publisher's outbox. The sink had
    // handled the second one already (its id is in the sink's inbox).
    {
        let source = db(dir.path(), "source");
        for id in ["ev-1", "ev-2", "ev-3"] {
            source
                .execute(
                    "INSERT INTO _weft_outbox (event) VALUES (?1)",
                    [envelope(id, "test.replayed")],
                )
                .unwrap();
        }
        db(dir.path(), "sink")
            .execute(
                "INSERT INTO _weft_inbox (event_id, handled_at) VALUES ('ev-2', 0)",
                [],
            )
            .unwrap();
    }
    let t = TestHost::start_toml(dir, &toml).await;
    let delivered = eventually(Duration::from_secs(5), || async {
        let n = notes(&t, "sink", "test.replayed").await;
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(delivered, Some(2), "the pending rows were not delivered");
    let sink = t.host.as_ref().unwrap().shared().components["sink"].clone();
    assert_eq!(sink.stats.duplicates.load(Ordering::Relaxed), 1);
    // Settled rows leave the outbox.
    let pruned = eventually(prune_wait(), || async {
        let left = count(
            &db(t.dir.path(), "source"),
            "SELECT count(*) FROM _weft_outbox",
        );
        (left == 0).then_some(())
    })
    .await;
    assert!(pruned.is_some(), "settled rows stayed in the outbox");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        notes(&t, "sink", "test.replayed").await,
        2,
        "delivered twice"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_w3c_trace_goes_from_the_request_to_the_events_it_caused() {
    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let dir = tempfile::tempdir().unwrap();
    let toml = config(dir.path(), "");
    let t = TestHost::start_toml(dir, &toml).await;
    let seen = t
        .host
        .as_ref()
        .unwrap()
        .subscribe(&["faulty.noted"])
        .await
        .unwrap();
    let mut traces = Vec::new();
    for header in [Some(CALLER), None, Some("not-a-traceparent")] {
        let mut request = t.client.post(t.url("/source/note")).body("traced");
        if let Some(value) = header {
            request = request.header("traceparent", value);
        }
        assert_eq!(request.send().await.unwrap().status(), 201);
        let event = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .expect("no event")
            .unwrap();
        traces.push(event.traceparent.clone());
    }
    // The request's span: the caller's trace id and flags, a span id of its own.
    let first = traces[0].clone().expect("the trace was dropped");
    assert!(
        first.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && first.ends_with("-01"),
        "{first}"
    );
    assert_ne!(first, CALLER, "the invocation is a span of its own");
    // No trace, or an invalid one: the events carry none.
    assert_eq!(traces[1], None);
    assert_eq!(traces[2], None);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_written_with_the_invocation_and_leave_the_outbox_once_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let toml = config(dir.path(), "");
    let t = TestHost::start_toml(dir, &toml).await;
    for i in 0..50 {
        let r = t
            .client
            .post(t.url("/source/note"))
            .body(format!("n{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let handled = eventually(Duration::from_secs(5), || async {
        let n = notes(&t, "sink", "faulty.noted").await;
        (n == 50).then_some(n)
    })
    .await;
    assert_eq!(handled, Some(50));
    let idle = eventually(Duration::from_secs(5), || async {
        let h: Value = t.json("/health").await;
        let b = &h["components"]["source"]["backlog"];
        (b["outbox"] == 0 && b["queued"] == 0 && b["retrying"] == 0).then_some(())
    })
    .await;
    assert!(idle.is_some(), "the source's backlog never emptied");
    let sink_inbox = count(
        &db(t.dir.path(), "sink"),
        "SELECT count(*) FROM _weft_inbox",
    );
    assert_eq!(sink_inbox, 50, "every handled event id is in the inbox");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_retried_with_backoff_then_kept_and_replayed_once_cured() {
    let dir = tempfile::tempdir().unwrap();
    let toml = config(dir.path(), "");
    let t = TestHost::start_toml(dir, &toml).await;
    let host = t.host.as_ref().unwrap();
    let sink = host.shared().components["sink"].clone();
    let failed = || sink.stats.failed.load(Ordering::Relaxed);
    let started = Instant::now();
    host.publish("faulty.poison", json!({})).await.unwrap();
    // When each delivery failed: 1 ms polling is plenty against 100 ms.
    let mut failures = Vec::new();
    while failures.len() < 3 && started.elapsed() < Duration::from_secs(5) {
        if failed() as usize > failures.len() {
            failures.push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(failures.len(), 3, "deliveries: {failures:?}");
    let gaps = [failures[1] - failures[0], failures[2] - failures[1]];
    // 100 ms then 200 ms, each ± 20 %, plus the time a delivery takes.
    assert!(
        gaps[0] >= Duration::from_millis(80) && gaps[0] <= Duration::from_millis(170),
        "{gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(160) && gaps[1] <= Duration::from_millis(290),
        "{gaps:?}"
    );
    let kept = eventually(Duration::from_secs(2), || async {
        let h: Value = t.json("/sink/health").await;
        (h["deadLetters"] == 1).then_some(h)
    })
    .await
    .expect("no dead letter");
    assert_eq!(kept["failed"], 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(failed(), 3, "delivered again after becoming a dead letter");

    // The admin API lists it, with its attempts and last error.
    let admin = t.operator();
    let (status, list) = t.get("/admin/dead-letters", &admin).await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    let dl = &list[0];
    assert_eq!(dl["id"], "sink:1");
    assert_eq!(dl["component"], "sink");
    assert_eq!(dl["attempts"], 3);
    assert_eq!(dl["event"]["eventType"], "faulty.poison");
    assert!(dl["lastError"].as_str().unwrap().contains("poison"), "{dl}");

    // Replayed while still poisonous: it stays, one attempt more.
    let (status, body) = t
        .post("/admin/dead-letters/sink:1/replay", &admin, &json!({}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "replay_failed");
    let (_, list) = t.get("/admin/dead-letters", &admin).await;
    assert_eq!(list[0]["attempts"], 4, "{list}");

    // Cured (the sink handles poison once a `cure` note exists), replayed:
    // handled once, and the dead letter is gone.
    let r = t
        .client
        .post(t.url("/sink/note"))
        .body("cure")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (status, body) = t
        .post("/admin/dead-letters/sink:1/replay", &admin, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], json!(["sink:1"]));
    assert_eq!(notes(&t, "sink", "faulty.poison").await, 1);
    let (_, list) = t.get("/admin/dead-letters", &admin).await;
    assert_eq!(list, json!([]));
    let (status, _) = t
        .post("/admin/dead-letters/sink:1/replay", &admin, &json!({}))
        .await;
    assert_eq!(status, 404, "a replayed dead letter is gone");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_api_wants_the_operator_and_known_ids() {
    let dir = tempfile::tempdir().unwrap();
    let toml = config(dir.path(), "");
    let t = TestHost::start_toml(dir, &toml).await;
    let anyone = t
        .client
        .get(t.url("/admin/dead-letters"))
        .send()
        .await
        .unwrap();
    assert_eq!(anyone.status(), 401);
    // No application token opens it: not a user's, not an app admin's.
    let (_, user) = t.user("dora").await;
    let (status, _) = t.get("/admin/dead-letters", &user).await;
    assert_eq!(status, 401);
    let app_admin = t.app_token("ops", "o", &["user", "admin"]);
    for path in ["/admin/dead-letters", "/admin/dead-letters/replay"] {
        let (status, _) = t.get(path, &app_admin).await;
        assert_eq!(status, 401, "{path}");
        let (status, _) = t.post(path, &app_admin, &json!({})).await;
        assert_eq!(status, 401, "{path}");
    }
    let admin = t.operator();
    for (path, want) in [
        ("/admin/dead-letters/nope:1/replay", 404),
        ("/admin/dead-letters/sink:x/replay", 404),
        ("/admin/dead-letters/sink:99/replay", 404),
        ("/admin/dead-letters/replay?component=nope", 404),
    ] {
        let (status, body) = t.post(path, &admin, &json!({})).await;
        assert_eq!(status, want, "{path}: {body}");
    }
    let (status, body) = t.post("/admin/dead-letters", &admin, &json!({})).await;
    assert_eq!(status, 405, "{body}");
    let (status, body) = t
        .post(
            "/admin/dead-letters/replay?component=sink",
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"replayed": [], "failed": []})));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_dlq_lists_and_replays_through_the_running_host() {
    let dir = tempfile::tempdir().unwrap();
    let toml = config(dir.path(), "[components.sink.retry]\nattempts = 1\n");
    let t = TestHost::start_toml(dir, &toml).await;
    let host = t.host.as_ref().unwrap();
    for _ in 0..2 {
        host.publish("faulty.poison", json!({})).await.unwrap();
    }
    eventually(Duration::from_secs(5), || async {
        let h: Value = t.json("/sink/health").await;
        (h["deadLetters"] == 2).then_some(())
    })
    .await
    .expect("no dead letters");
    let file = t.dir.path().join("runtime.toml");
    std::fs::write(&file, &toml).unwrap();
    let weft = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .args(["--config", file.to_str().unwrap(), "--url", &t.base])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = weft(&["dlq", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("sink:1") && out.contains("sink:2"), "{out}");
    assert!(
        out.contains("faulty.poison") && out.contains("2 dead letter(s)"),
        "{out}"
    );

    let (ok, out, err) = weft(&["dlq", "replay", "sink:1"]);
    assert!(!ok, "a failing replay must fail: {out}");
    assert!(err.contains("delivery failed again"), "{err}");

    let r = t
        .client
        .post(t.url("/sink/note"))
        .body("cure")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (ok, out, err) = weft(&["dlq", "replay", "--all", "--component", "sink"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("2 replayed, 0 failed"), "{out}");
    assert_eq!(notes(&t, "sink", "faulty.poison").await, 2);
    let (ok, out, _) = weft(&["dlq", "list"]);
    assert!(ok && out.contains("0 dead letter(s)"), "{out}");
    let (ok, _, err) = weft(&["dlq", "replay"]);
    assert!(!ok && err.contains("usage"), "{err}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_handler_delivers_the_event_again_after_restart_and_applies_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let toml = format!(
        r#"version = 1
[http]
addr = "{addr}"
[data]
dir = "{data}"
{faulty}"#,
        data = dir.path().join("data").display(),
        faulty = common::source_and_sink(
            r#""faulty.slow""#,
            r#""faulty.slow""#,
            r#""faulty.noted""#,
            "slow_ms = \"1500\"\nrecord_events = \"true\"",
        ),
    );
    let file = dir.path().join("runtime.toml");
    std::fs::write(&file, toml).unwrap();
    let client = reqwest::Client::new();

    let info: &[(&str, &std::ffi::OsStr)] = &[("WEFT_LOG", "info".as_ref())];
    let first = WeftProcess::start(&file, &addr, &[], info, &dir.path().join("first.log"));
    first
        .wait_for("weft started", Duration::from_secs(30))
        .expect("the host did not start");
    let r = client
        .post(format!("{}/source/emit?type=faulty.slow&n=1", first.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the publish was acknowledged");
    let line = first
        .wait_for("slow event", Duration::from_secs(10))
        .expect("the handler never started");
    let event_id: String = line
        .rsplit("slow event ")
        .next()
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    assert_eq!(event_id.len(), 36, "{line}");
    // Mid-handler: the sink is spinning inside its invocation.
    first.kill();

    // The relay delivers what the first run left as the host starts: the
    // handler may begin before "weft started" is logged.
    let second = WeftProcess::start(&file, &addr, &[], info, &dir.path().join("second.log"));
    second
        .wait_for(&format!("slow event {event_id}"), Duration::from_secs(10))
        .expect("the event was not delivered again");
    let seen = eventually(Duration::from_secs(10), || async {
        let notes: Vec<Value> = client
            .get(format!("{}/sink/notes", second.base))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let n = notes.iter().filter(|n| n["body"] == "faulty.slow").count();
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(seen, Some(1), "applied once after the restart");
    // Let a second delivery, if there were one, finish before counting.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    second.stop();
    let sink = db(&dir.path().join("data"), "sink");
    let rows = count(
        &sink,
        &format!("SELECT count(*) FROM seen WHERE event_id = '{event_id}'"),
    );
    assert_eq!(rows, 1, "the event was applied {rows} times");
    let outbox = count(
        &db(&dir.path().join("data"), "source"),
        "SELECT count(*) FROM _weft_outbox",
    );
    assert_eq!(outbox, 0, "the settled event stayed in the outbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_leaves_its_backlog_on_disk_and_in_health_not_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"{header}[bus]
queue_capacity = 16
{iam_and_lgm}{faulty}"#,
        header = common::header(dir.path()),
        iam_and_lgm = common::iam_and_lgm(),
        faulty = common::source_and_sink(
            r#""faulty.slow""#,
            r#""faulty.slow""#,
            r#""faulty.noted""#,
            r#"slow_ms = "1""#,
        ),
    );
    let t = TestHost::start_toml(dir, &toml).await;
    // 3,000 events at about 1 ms each: the sink needs seconds, the
    // publisher is not held up by it.
    let started = Instant::now();
    for _ in 0..3 {
        let r = t
            .client
            .post(t.url("/source/emit?type=faulty.slow&n=1000"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let publishing = started.elapsed();
    let (mut peak_outbox, mut peak_queued) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut done = None;
    while done.is_none() && Instant::now() < deadline {
        let h: Value = t.json("/health").await;
        let source = &h["components"]["source"]["backlog"];
        let sink = &h["components"]["sink"];
        peak_outbox = peak_outbox.max(source["outbox"].as_u64().unwrap());
        peak_queued = peak_queued.max(sink["backlog"]["queued"].as_u64().unwrap());
        if sink["handled"] == 3000 && source["outbox"] == 0 {
            done = Some(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(done.is_some(), "the sink did not catch up");
    let draining = started.elapsed();
    assert!(
        publishing * 2 < draining,
        "publishing ({publishing:?}) waited for the slow sink ({draining:?})"
    );
    if !common::over_nats() {
        // On NATS the backlog moves on to the stream at once.
        assert!(peak_outbox > 500, "the backlog never showed: {peak_outbox}");
    }
    assert!(
        peak_queued <= 16,
        "the queue grew past its capacity: {peak_queued}"
    );
    let pruned = eventually(prune_wait(), || async {
        let rows = count(
            &db(t.dir.path(), "source"),
            "SELECT count(*) FROM _weft_outbox",
        );
        (rows == 0).then_some(())
    })
    .await;
    assert!(pruned.is_some(), "settled rows stayed in the outbox");
    let notes: Vec<Value> = t.json("/sink/notes").await;
    assert_eq!(notes.len(), 3000, "each event handled once");
    t.stop().await;
}
