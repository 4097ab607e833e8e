//! The sandbox against hostile guests: the `hostile` test component loops,
//! allocates without end, recurses without end, traps in storms and calls
//! what it was not granted, while the `faulty` component next to it must go
//! on being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_host::config::Config;
use weft_host::{Host, StartError};

use common::{wasm, TestHost};

/// Hostile's limits in most tests: small enough to hit quickly.
const HOSTILE_LIMITS: &str =
    "memory_mib = 32\ntimeout_ms = 300\nmax_payload_bytes = 4096\nmax_body_bytes = 8192\n";

fn config(dir: &std::path::Path, hostile_limits: &str, hostile_grants: &str) -> String {
    format!(
        r#"{header}[components.hostile]
wasm = "{hostile}"
serve = ["hostile.echo"]
[components.hostile.limits]
{hostile_limits}
[components.hostile.grants]
{hostile_grants}
[components.faulty]
wasm = "{faulty}"
[components.faulty.grants]
publish = ["faulty.noted"]
"#,
        header = common::header(dir),
        hostile = wasm("hostile").display(),
        faulty = wasm("faulty").display(),
    )
}

const GRANTS: &str = "publish = [\"hostile.*\"]\nrequest = [\"hostile.echo\"]\npush = true\n";

async fn start(hostile_limits: &str) -> TestHost {
    let dir = tempfile::tempdir().unwrap();
    let toml = config(dir.path(), hostile_limits, GRANTS);
    TestHost::start_toml(dir, &toml).await
}

/// GET `path`: status and JSON body (Null when the body is not JSON).
async fn get(t: &TestHost, path: &str) -> (u16, Value) {
    let r = t.client.get(t.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// POST JSON without a token: status and JSON body.
async fn post(t: &TestHost, path: &str, body: &Value) -> (u16, Value) {
    let r = t.client.post(t.url(path)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `n` GETs of `/faulty/ok`, one after another; how many answered 200.
async fn faulty_ok(t: &TestHost, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if get(t, "/faulty/ok").await.0 == 200 {
            ok += 1;
        }
    }
    ok
}

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_at_its_deadline_while_others_are_served() {
    let t = start(HOSTILE_LIMITS).await;
    let started = Instant::now();
    let looping = {
        let (client, url) = (t.client.clone(), t.url("/hostile/loop"));
        tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    // Served while the loop spins on one of the two worker threads.
    assert_eq!(faulty_ok(&t, 20).await, 20);
    let (status, body) = looping.await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "internal");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("300 ms"),
        "{body}"
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // Generous: a loaded CI machine; the bench measures the real overshoot.
    assert!(took < Duration::from_secs(3), "not stopped: {took:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_capped_and_host_memory_stays_bounded() {
    let t = start(HOSTILE_LIMITS).await;
    // Allocating within the cap works.
    let (status, body) = get(&t, "/hostile/grow?mib=8").await;
    assert_eq!((status, body["allocated_mib"].as_u64()), (200, Some(8)));
    let before = rss_mib();
    for _ in 0..10 {
        let (status, body) = get(&t, "/hostile/memory-bomb").await;
        assert_eq!(status, 500, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("memory limit of 32 MiB"), "{message}");
    }
    let grown = rss_mib().saturating_sub(before);
    // Ten bombs of 32 MiB each: kept, they would add 320 MiB.
    assert!(grown < 96, "host RSS grew by {grown} MiB");
    assert_eq!(faulty_ok(&t, 5).await, 5);
    let health: Value = t.json("/hostile/health").await;
    assert_eq!(health["failed"], 10, "{health}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_is_a_trap_not_a_crash() {
    let t = start(HOSTILE_LIMITS).await;
    let (status, body) = get(&t, "/hostile/recurse?depth=100").await;
    assert_eq!((status, body["sum"].as_u64()), (200, Some(5050)), "{body}");
    for _ in 0..3 {
        let (status, body) = get(&t, "/hostile/recurse").await;
        assert_eq!(status, 500, "{body}");
        assert_eq!(body["error"]["code"], "internal");
    }
    assert_eq!(get(&t, "/hostile/ok").await.0, 200);
    assert_eq!(faulty_ok(&t, 5).await, 5);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_storm_leaves_other_components_serving() {
    let t = start(HOSTILE_LIMITS).await;
    let storm: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (t.client.clone(), t.url("/hostile/trap"));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..125 {
                    statuses.push(client.get(&url).send().await.unwrap().status().as_u16());
                }
                statuses
            })
        })
        .collect();
    let served = faulty_ok(&t, 100).await;
    let mut trapped = 0;
    for task in storm {
        trapped += task.await.unwrap().iter().filter(|s| **s == 500).count();
    }
    assert_eq!(trapped, 1000);
    assert_eq!(served, 100);
    let hostile: Value = t.json("/hostile/health").await;
    assert_eq!(hostile["status"], "degraded", "{hostile}");
    assert_eq!(hostile["failed"], 1000);
    let faulty: Value = t.json("/faulty/health").await;
    assert_eq!(faulty["status"], "ok", "{faulty}");
    // One success and the trapping component is healthy again.
    assert_eq!(get(&t, "/hostile/ok").await.0, 200);
    let hostile: Value = t.json("/hostile/health").await;
    assert_eq!(hostile["status"], "ok", "{hostile}");
    t.stop().await;
}

/// The variant a hostile call failed with (the start of its message).
fn variant(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .and_then(|m| m.split(':').next())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_outside_the_grants_are_denied() {
    let t = start(HOSTILE_LIMITS).await;
    let publish = |event_type: &str| json!({"eventType": event_type, "data": {"n": 1}});
    let (status, body) = post(&t, "/hostile/publish", &publish("hostile.ok")).await;
    assert_eq!(status, 201, "{body}");
    for ungranted in ["user.registered", "account.created", "hostileish.ok"] {
        let (status, body) = post(&t, "/hostile/publish", &publish(ungranted)).await;
        assert_eq!(
            (status, variant(&body)),
            (403, "denied"),
            "{ungranted}: {body}"
        );
    }
    let request = |subject: &str| json!({"subject": subject, "payload": "ping", "timeoutMs": 200});
    let (status, body) = post(&t, "/hostile/request", &request("hostile.echo")).await;
    assert_eq!((status, &body["reply"]), (200, &json!("ping")), "{body}");
    let (status, body) = post(&t, "/hostile/request", &request("workflows.create")).await;
    assert_eq!((status, variant(&body)), (403, "denied"), "{body}");
    let (status, body) = post(&t, "/hostile/issue-token", &json!({})).await;
    assert_eq!((status, variant(&body)), (403, "denied"), "{body}");
    // Its own database only, and not the host's tables in it.
    for sql in [
        "SELECT * FROM _weft_migrations",
        "SELECT * FROM _weft_dead_letters",
        "ATTACH DATABASE '/tmp/other.sqlite' AS other",
        "PRAGMA journal_mode = DELETE",
    ] {
        let (status, body) = post(&t, "/hostile/sql", &json!({"sql": sql, "query": true})).await;
        assert_eq!((status, variant(&body)), (403, "denied"), "{sql}: {body}");
    }
    let (status, _) = post(
        &t,
        "/hostile/sql",
        &json!({"sql": "SELECT * FROM things", "query": true}),
    )
    .await;
    assert_eq!(status, 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_limits_apply_per_component() {
    let t = start(HOSTILE_LIMITS).await;
    let big = "x".repeat(5000);
    let (status, body) = post(
        &t,
        "/hostile/publish",
        &json!({"eventType": "hostile.big", "data": {"text": big}}),
    )
    .await;
    assert_eq!((status, variant(&body)), (413, "limit-exceeded"), "{body}");
    let (status, body) = post(
        &t,
        "/hostile/request",
        &json!({"subject": "hostile.echo", "payload": big, "timeoutMs": 200}),
    )
    .await;
    assert_eq!((status, variant(&body)), (413, "limit-exceeded"), "{body}");
    // Hostile's body limit (8 KiB) is below the gateway's (1 MiB): the
    // gateway refuses before the component runs.
    let (status, body) = post(&t, "/hostile/sql", &json!({"sql": "x".repeat(9000)})).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    let handled: Value = t.json("/hostile/health").await;
    assert_eq!(
        handled["handled"], 2,
        "the component ran for the 413: {handled}"
    );
    // Faulty keeps the default limits.
    let r = t
        .client
        .post(t.url("/faulty/note"))
        .body("y".repeat(9000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_concurrency_limit_wait_then_get_503() {
    let t = start("concurrency = 1\ntimeout_ms = 400\n").await;
    let spawn_get = |path: &str| {
        let (client, url) = (t.client.clone(), t.url(path));
        tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    // The first holds the only slot for 400 ms; the second waits for it,
    // then runs its own 400 ms; the third would have to wait past its
    // 400 ms and is told to come back instead.
    let started = Instant::now();
    let first = spawn_get("/hostile/loop");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = spawn_get("/hostile/loop");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let third = spawn_get("/hostile/ok");
    let (status, body) = third.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "service_busy");
    assert_eq!(first.await.unwrap().0, 500);
    assert_eq!(second.await.unwrap().0, 500);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "the second did not wait"
    );
    assert_eq!(get(&t, "/hostile/ok").await.0, 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_that_is_never_granted_is_refused_at_load() {
    let cases = [
        // Hostile calls realtime.push: without `push` it cannot load.
        (
            "publish = [\"hostile.*\"]\n",
            "weft:service/realtime",
            "grants.push",
        ),
        // It calls messaging: with nothing to publish or request, neither.
        ("push = true\n", "weft:service/messaging", "grants.publish"),
    ];
    for (grants, import, missing) in cases {
        let dir = tempfile::tempdir().unwrap();
        let toml = config(dir.path(), HOSTILE_LIMITS, grants);
        let err = Host::start(Config::parse(&toml, dir.path()).unwrap())
            .await
            .err()
            .expect("loaded without the grant");
        let message = err.to_string();
        assert!(matches!(err, StartError::NotGranted { .. }), "{message}");
        assert!(
            message.contains("`hostile`") && message.contains(import) && message.contains(missing),
            "{message}"
        );
    }
}

/// Seeds for the guest-driven fuzz: `WEFT_FUZZ_SEEDS` (`just fuzz` sets a
/// large number), 16 by default.
fn fuzz_seeds() -> u64 {
    std::env::var("WEFT_FUZZ_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_wit_values_from_a_guest_never_hurt_the_host() {
    let t = start("memory_mib = 64\ntimeout_ms = 5000\n").await;
    let mut seen = std::collections::BTreeMap::<String, u64>::new();
    let mut ok = 0;
    for seed in 1..=fuzz_seeds() {
        let (status, body) = get(&t, &format!("/hostile/fuzz?seed={seed}&calls=200")).await;
        assert_eq!(status, 200, "seed {seed}: {body}");
        let errors = body["errors"].as_object().unwrap();
        let failed: u64 = errors.values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(
            body["ok"].as_u64().unwrap() + failed,
            200,
            "seed {seed}: {body}"
        );
        ok += body["ok"].as_u64().unwrap();
        for (variant, n) in errors {
            *seen.entry(variant.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    // The generator reached the checks: refused, malformed and oversized
    // values all came back as typed errors, and some calls went through.
    for variant in ["denied", "invalid", "limit-exceeded"] {
        assert!(seen.get(variant).is_some_and(|n| *n > 0), "{seen:?}");
    }
    assert!(ok > 0);
    let health: Value = t.json("/health").await;
    assert_eq!(health["bus"]["connected"], true);
    assert_eq!(get(&t, "/hostile/ok").await.0, 200);
    assert_eq!(faulty_ok(&t, 5).await, 5);
    t.stop().await;
}

/// A query that never ends on its own: SQLite counts forever.
const COUNT_FOREVER: &str =
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_without_end_stops_at_the_deadline_while_others_are_served() {
    let t = std::sync::Arc::new(start(HOSTILE_LIMITS).await);
    // Two at once: without the hand-off each would hold one of the two
    // workers until its deadline.
    let runaway = |t: std::sync::Arc<TestHost>| async move {
        let started = Instant::now();
        let answer = post(
            &t,
            "/hostile/sql",
            &json!({"sql": COUNT_FOREVER, "query": true}),
        )
        .await;
        (answer, started.elapsed())
    };
    let a = tokio::spawn(runaway(t.clone()));
    let b = tokio::spawn(runaway(t.clone()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut slowest = Duration::ZERO;
    while !(a.is_finished() && b.is_finished()) {
        let asked = Instant::now();
        assert_eq!(get(&t, "/faulty/ok").await.0, 200);
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for runaway in [a, b] {
        let ((status, body), took) = runaway.await.unwrap();
        assert_eq!((status, variant(&body)), (503, "timeout"), "{body}");
        // timeout_ms = 300; the rest is HTTP and the two runs sharing cores.
        assert!(took < Duration::from_millis(300 + 150), "took {took:?}");
    }
    assert!(
        slowest < Duration::from_millis(100),
        "faulty took {slowest:?} beside the runaway queries"
    );
    let health: Value = t.json("/health").await;
    assert_eq!(health["status"], "ok", "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_values_and_files_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let limits = format!("{HOSTILE_LIMITS}max_db_mib = 1\n");
    let toml = config(dir.path(), &limits, GRANTS);
    let t = TestHost::start_toml(dir, &toml).await;
    let before = rss_mib();
    for sql in [
        "SELECT randomblob(1000000000)",
        "SELECT length(zeroblob(1000000000))",
        "SELECT length(printf('%.*c', 1000000000, 'x'))",
    ] {
        let (status, body) = post(&t, "/hostile/sql", &json!({"sql": sql, "query": true})).await;
        assert_eq!(
            (status, variant(&body)),
            (413, "limit-exceeded"),
            "{sql}: {body}"
        );
    }
    let grown = rss_mib().saturating_sub(before);
    assert!(grown < 200, "the host grew by {grown} MiB");
    // 1 MiB of database: the table fills, the component is told, and the
    // host and its neighbours go on.
    let mut full = None;
    for _ in 0..64 {
        let (status, body) = post(
            &t,
            "/hostile/sql",
            &json!({"sql": "INSERT INTO things(body) VALUES (hex(randomblob(16000)))"}),
        )
        .await;
        if status != 200 {
            full = Some((status, body));
            break;
        }
    }
    let (status, body) = full.expect("1 MiB never filled");
    assert_eq!((status, variant(&body)), (413, "limit-exceeded"), "{body}");
    assert_eq!(faulty_ok(&t, 3).await, 3);
    let (status, _) = post(
        &t,
        "/hostile/sql",
        &json!({"sql": "SELECT count(*) FROM things", "query": true}),
    )
    .await;
    assert_eq!(status, 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_cannot_renumber_the_outbox() {
    let t = start(HOSTILE_LIMITS).await;
    for sql in [
        "UPDATE sqlite_sequence SET seq = 0",
        "DELETE FROM sqlite_sequence",
        "CREATE TRIGGER renumber AFTER INSERT ON things BEGIN UPDATE sqlite_sequence SET seq = 0; END",
    ] {
        let (status, body) = post(&t, "/hostile/sql", &json!({"sql": sql})).await;
        if status == 200 {
            // Made, but what it does is checked whenever it fires.
            let (status, body) = post(
                &t,
                "/hostile/sql",
                &json!({"sql": "INSERT INTO things(body) VALUES ('x')"}),
            )
            .await;
            assert_eq!((status, variant(&body)), (403, "denied"), "{sql}: {body}");
        } else {
            assert_eq!((status, variant(&body)), (403, "denied"), "{sql}: {body}");
        }
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_a_guest_mints_never_opens_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let toml = config(
        dir.path(),
        HOSTILE_LIMITS,
        &format!("{GRANTS}issue_tokens = true\n"),
    );
    let t = TestHost::start_toml(dir, &toml).await;
    // The operator role is the host's: never issued.
    let (status, body) = post(
        &t,
        "/hostile/issue-token",
        &json!({"roles": ["weft:operator"]}),
    )
    .await;
    assert_eq!((status, variant(&body)), (403, "denied"), "{body}");
    let (status, body) = post(&t, "/hostile/issue-token", &json!({"roles": ["admin"]})).await;
    assert_eq!(status, 200, "{body}");
    let minted = body["accessToken"].as_str().unwrap().to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for (method, path) in [
        ("POST", "/admin/components/hostile/reload"),
        ("POST", "/admin/components/faulty/rollback"),
        ("GET", "/admin/dead-letters"),
        ("POST", "/admin/dead-letters/replay"),
        ("POST", "/admin/components/hostile/call/ok"),
    ] {
        let r = client
            .request(method.parse().unwrap(), t.url(path))
            .bearer_auth(&minted)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
    }
    // The operator's own token does open it.
    let r = client
        .get(t.url("/admin/dead-letters"))
        .bearer_auth(t.operator())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_reads_are_walled_like_the_others() {
    let t = start(HOSTILE_LIMITS).await;
    let committed = |sql: &str| json!({"sql": sql, "committed": true});
    for (sql, expected) in [
        ("SELECT * FROM _weft_outbox", (403, "denied")),
        ("SELECT * FROM _weft_revocations", (403, "denied")),
        ("SELECT randomblob(1000000000)", (413, "limit-exceeded")),
        ("INSERT INTO things(body) VALUES ('x')", (400, "invalid")),
        ("PRAGMA journal_mode = DELETE", (403, "denied")),
        (COUNT_FOREVER, (503, "timeout")),
    ] {
        let started = Instant::now();
        let (status, body) = post(&t, "/hostile/sql", &committed(sql)).await;
        assert_eq!((status, variant(&body)), expected, "{sql}: {body}");
        assert!(
            started.elapsed() < Duration::from_millis(300 + 150),
            "{sql}"
        );
    }
    // It reads what is committed.
    let (status, _) = post(
        &t,
        "/hostile/sql",
        &json!({"sql": "INSERT INTO things(body) VALUES ('x')"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = post(&t, "/hostile/sql", &committed("SELECT * FROM things")).await;
    assert_eq!((status, &body["rows"]), (200, &json!(1)), "{body}");
    t.stop().await;
}
