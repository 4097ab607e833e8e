//! Hot swap under load: the faulty component swapped between two versions
//! whose answers differ, many times, while HTTP requests and events flow;
//! broken versions refused; rollback; the admin API, the CLI and the file
//! watcher.
//!
//! The second version is made from the built `faulty.wasm` by patching the
//! text of its `VERSION` constant (`weft-test-version:1` → `:2`, or `:X`
//! for a version whose migrations fail): a different component, with a
//! different sha256 and different answers, without building twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weft_host::engine::sha256_hex;
use weft_host::reload::ReloadError;

use common::{eventually, wasm, TestHost};

const MARKER: &[u8] = b"weft-test-version:1";

/// faulty.wasm with its version text changed to `weft-test-version:<tag>`.
fn faulty_version(tag: u8) -> Vec<u8> {
    let mut bytes = std::fs::read(wasm("faulty")).unwrap();
    let found: Vec<usize> = bytes
        .windows(MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == MARKER)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(found.len(), 1, "the version text must appear once");
    bytes[found[0] + MARKER.len() - 1] = tag;
    bytes
}

/// A host with faulty (2 replicas) handling `swap.>` events, loaded from a
/// copy of faulty.wasm in the test's own folder (so it can be rewritten).
async fn start(watch: bool) -> TestHost {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faulty.wasm");
    std::fs::write(&path, faulty_version(b'1')).unwrap();
    let toml = format!(
        r#"{header}[components.faulty]
wasm = "{wasm}"
subscribe = ["swap.>"]
replicas = 2
watch = {watch}
[components.faulty.grants]
publish = ["faulty.noted"]
request = ["faulty.echo"]
"#,
        header = common::header(&dir.path().join("data")),
        wasm = path.display(),
    );
    std::fs::write(dir.path().join("runtime.toml"), &toml).unwrap();
    TestHost::start_toml(dir, &toml).await
}

async fn version(t: &TestHost) -> String {
    let v: Value = t.json("/faulty/version").await;
    v["version"].as_str().unwrap().to_owned()
}

async fn health(t: &TestHost) -> Value {
    t.json("/faulty/health").await
}

fn host(t: &TestHost) -> &weft_host::Host {
    t.host.as_ref().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_under_load_loses_nothing_and_fails_nothing() {
    let t = start(false).await;
    let v1 = faulty_version(b'1');
    let v2 = faulty_version(b'2');

    // Steady HTTP load: every answer, with when its request was sent.
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<(Instant, Instant, u16, String)>::new()));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url) = (t.client.clone(), t.url("/faulty/version"));
        let (stop, answers) = (stop.clone(), answers.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let r = client.get(&url).send().await.unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or_default();
                let v = body["version"].as_str().unwrap_or("").to_owned();
                answers
                    .lock()
                    .unwrap()
                    .push((sent, Instant::now(), status, v));
            }
        }));
    }
    // Steady events: 3,000 of distinct types, each stored once as a note.
    const EVENTS: usize = 3000;
    let bus = host(&t).shared().bus.clone();
    let events = tokio::spawn(async move {
        for batch in 0..EVENTS / 50 {
            let batch: Vec<_> = (0..50)
                .map(|i| {
                    let n = batch * 50 + i;
                    common::event(&format!("e{n}"), &format!("swap.e{n}"), json!({}), "swap")
                })
                .collect();
            bus.publish(batch).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    // 20 swaps, alternating.
    let mut windows = Vec::new();
    for i in 0..20 {
        let (bytes, tag) = if i % 2 == 0 {
            (&v2, "weft-test-version:2")
        } else {
            (&v1, "weft-test-version:1")
        };
        let began = Instant::now();
        let swapped = host(&t)
            .reload("faulty", Some(bytes.clone()))
            .await
            .unwrap();
        let done = Instant::now();
        assert_eq!(swapped.to, sha256_hex(bytes));
        if let Some((_, _, prev_end)) = windows.last_mut() {
            *prev_end = began;
        }
        windows.push((done, tag, done + Duration::from_secs(3600)));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    events.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    assert!(answers.len() > 100, "too little load: {}", answers.len());
    let failed = answers.iter().filter(|(_, _, s, _)| *s != 200).count();
    assert_eq!(failed, 0, "failed requests during swaps");
    let mut checked = 0;
    // Answers to requests sent after a swap returned and answered before
    // the next swap began (a request answered later may rightly meet the
    // next version).
    for (sent, answered, _, v) in answers.iter() {
        let window = windows
            .iter()
            .enumerate()
            .find(|(_, (from, _, to))| sent > from && answered < to);
        if let Some((k, (from, tag, _))) = window {
            assert_eq!(
                v,
                tag,
                "an answer from the old version, sent {:?} after swap {k} returned",
                sent.duration_since(*from)
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} answers fell between swaps");

    // Every event applied exactly once, across 20 swaps and 2 replicas.
    let db = host(&t).shared().components["faulty"].ctx.db.clone();
    let counts = eventually(Duration::from_secs(20), || {
        let db = db.clone();
        async move {
            let rows = db
                .host_query(
                    "SELECT count(*), count(DISTINCT body) FROM notes WHERE body LIKE 'swap.e%'",
                )
                .await
                .unwrap();
            let int = |i: usize| match rows.rows[0][i] {
                rusqlite::types::Value::Integer(n) => n,
                _ => -1,
            };
            let (all, distinct) = (int(0), int(1));
            (all as usize >= EVENTS).then_some((all, distinct))
        }
    })
    .await
    .expect("events were lost");
    assert_eq!(
        counts,
        (EVENTS as i64, EVENTS as i64),
        "events applied twice"
    );
    let h = health(&t).await;
    assert_eq!(h["swaps"], 20);
    assert_eq!(h["failed"], 0, "{h}");
    assert_eq!(h["version"], sha256_hex(&v1));
    assert_eq!(h["previousVersion"], sha256_hex(&v2));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_versions_are_refused_and_the_old_one_keeps_serving() {
    let t = start(false).await;
    let serving = health(&t).await["version"].clone();
    let garbage = b"\0asm\x01\0\0\0 not a component".to_vec();
    let empty_component = b"\0asm\x0d\0\x01\0".to_vec();
    let failing_migration = faulty_version(b'X');
    let cases: [(&str, Vec<u8>); 3] = [
        ("bad wasm", garbage),
        ("wrong world", empty_component),
        ("failing migration", failing_migration),
    ];
    for (what, bytes) in cases {
        let err = host(&t)
            .reload("faulty", Some(bytes))
            .await
            .err()
            .unwrap_or_else(|| panic!("{what} was swapped in"));
        match (what, &err) {
            ("bad wasm", ReloadError::Refused(weft_host::StartError::Load { .. }))
            | ("wrong world", ReloadError::Refused(weft_host::StartError::World { .. }))
            | ("failing migration", ReloadError::Migration { .. }) => {}
            _ => panic!("{what}: unexpected error {err}"),
        }
        assert_eq!(version(&t).await, "weft-test-version:1", "{what}");
        let h = health(&t).await;
        assert_eq!(h["version"], serving, "{what}");
        assert_eq!(h["swaps"], 0);
    }
    // The failed migration left the schema as it was: notes still works.
    let r = t
        .client
        .post(t.url("/faulty/note"))
        .body("after")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(matches!(
        host(&t).reload("nobody", None).await,
        Err(ReloadError::UnknownComponent(_))
    ));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_to_the_previous_version() {
    let t = start(false).await;
    assert!(matches!(
        host(&t).rollback("faulty").await,
        Err(ReloadError::NoPrevious(_))
    ));
    host(&t)
        .reload("faulty", Some(faulty_version(b'2')))
        .await
        .unwrap();
    assert_eq!(version(&t).await, "weft-test-version:2");
    let back = host(&t).rollback("faulty").await.unwrap();
    assert_eq!(back.to, sha256_hex(&faulty_version(b'1')));
    assert_eq!(version(&t).await, "weft-test-version:1");
    // Rolling back again returns to the version rolled back from.
    host(&t).rollback("faulty").await.unwrap();
    assert_eq!(version(&t).await, "weft-test-version:2");
    // A reload without bytes reads the configured file again (version 1).
    host(&t).reload("faulty", None).await.unwrap();
    assert_eq!(version(&t).await, "weft-test-version:1");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_the_cli_reload_and_roll_back() {
    let t = start(false).await;
    let tokens = host(&t).shared().tokens.clone();
    let admin = t.operator();
    // An application admin is not the operator.
    let app_admin = tokens
        .issue("ops", "o", &["admin".into()])
        .unwrap()
        .access_token;
    let user = tokens
        .issue("u", "o", &["user".into()])
        .unwrap()
        .access_token;
    let v2 = faulty_version(b'2');
    // A refusal (401, 403) comes before the host reads the upload, and the
    // host then closes the connection: a pooled connection could be reused
    // just as it closes (a broken pipe), so each request gets its own.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let post = |path: &str, token: Option<&str>, body: Vec<u8>| {
        let mut req = client.post(t.url(path)).body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let reload = "/admin/components/faulty/reload";
    assert_eq!(post(reload, None, v2.clone()).await.unwrap().status(), 401);
    assert_eq!(
        post(reload, Some("x.y.z"), v2.clone())
            .await
            .unwrap()
            .status(),
        401
    );
    for token in [&user, &app_admin] {
        for path in [reload, "/admin/components/faulty/rollback"] {
            assert_eq!(
                post(path, Some(token), v2.clone()).await.unwrap().status(),
                401,
                "{path}"
            );
        }
    }
    let r = post("/admin/components/nobody/reload", Some(&admin), v2.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = post(reload, Some(&admin), b"junk".to_vec()).await.unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_component");
    let r = post(reload, Some(&admin), v2.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["to"], sha256_hex(&v2));
    assert_eq!(version(&t).await, "weft-test-version:2");

    // The CLI, as an operator would run it next to `just run`.
    let config = t.dir.path().join("runtime.toml");
    let v1_path = t.dir.path().join("v1.wasm");
    std::fs::write(&v1_path, faulty_version(b'1')).unwrap();
    let cli = |args: &[&str]| {
        let config = config.clone();
        let base = t.base.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
                .args(&args)
                .arg("--config")
                .arg(&config)
                .args(["--url", &base])
                .env("WEFT_LOG", "warn")
                .output()
                .unwrap()
        })
    };
    let out = cli(&["reload", "faulty", v1_path.to_str().unwrap()])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("faulty: "));
    assert_eq!(version(&t).await, "weft-test-version:1");
    let out = cli(&["rollback", "faulty"]).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(version(&t).await, "weft-test-version:2");
    let out = cli(&["reload", "faulty", "/nonexistent.wasm"])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent.wasm"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_file_is_reloaded_when_it_changes() {
    let t = start(true).await;
    let path = t.dir.path().join("faulty.wasm");
    let write = |bytes: Vec<u8>| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write(faulty_version(b'2'));
    became(&t, "weft-test-version:2").await;
    // A broken file is refused; the running version stays.
    write(b"garbage".to_vec());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(version(&t).await, "weft-test-version:2");
    write(faulty_version(b'1'));
    became(&t, "weft-test-version:1").await;
    assert_eq!(health(&t).await["swaps"], 2);
    t.stop().await;
}

/// Waits (up to 10 s) until faulty answers version `want`.
async fn became(t: &TestHost, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while version(t).await != want {
        assert!(Instant::now() < deadline, "never became {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// In-process `GET /faulty/version` on `host`.
async fn version_of(host: &weft_host::Host) -> String {
    let response = host
        .call(
            hyper::Request::get("/faulty/version")
                .body(bytes::Bytes::new())
                .unwrap(),
        )
        .await;
    let v: Value = serde_json::from_slice(response.body()).unwrap();
    v["version"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_on_one_nats_host_leaves_the_other_alone_and_loses_nothing() {
    let server = common::NatsServer::start();
    let mut hosts = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faulty.wasm");
        std::fs::write(&path, faulty_version(b'1')).unwrap();
        let toml = format!(
            r#"{header}[bus]
kind = "nats"
url = "{url}"
[components.faulty]
wasm = "{wasm}"
subscribe = ["swap.>"]
serve = ["faulty.echo"]
[components.faulty.grants]
publish = ["faulty.noted"]
[components.faulty.config]
record_events = "true"
"#,
            header = common::header(dir.path()),
            url = server.url,
            wasm = path.display(),
        );
        let config = weft_host::config::Config::parse(&toml, dir.path()).unwrap();
        hosts.push(weft_host::Host::start(config).await.unwrap());
        dirs.push(dir);
    }
    let (a, b) = (&hosts[0], &hosts[1]);
    const EVENTS: usize = 400;
    for batch in 0..EVENTS / 50 {
        for i in 0..50 {
            a.publish(&format!("swap.e{}", batch * 50 + i), json!({}))
                .await
                .unwrap();
        }
        if batch == 3 {
            // Host A alone swaps, in the middle of the stream.
            a.reload("faulty", Some(faulty_version(b'2')))
                .await
                .unwrap();
        }
        let echo = b
            .request("faulty.echo", "ping", Duration::from_secs(2))
            .await;
        assert!(
            echo.is_ok(),
            "request-reply failed during the swap: {echo:?}"
        );
    }
    assert_eq!(version_of(a).await, "weft-test-version:2");
    assert_eq!(
        version_of(b).await,
        "weft-test-version:1",
        "B was disturbed"
    );
    assert_eq!(
        b.shared().components["faulty"]
            .swaps
            .load(Ordering::Relaxed),
        0
    );
    let seen = |host: &weft_host::Host| {
        let db = host.shared().components["faulty"].ctx.db.path().to_owned();
        let conn = rusqlite::Connection::open(db).unwrap();
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM seen", [], |r| r.get(0))
            .unwrap();
        rows
    };
    let all = eventually(Duration::from_secs(15), || async {
        let total = seen(a) + seen(b);
        (total >= EVENTS as i64).then_some(total)
    })
    .await;
    assert_eq!(all, Some(EVENTS as i64), "events lost across the swap");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (on_a, on_b) = (seen(a), seen(b));
    assert_eq!(on_a + on_b, EVENTS as i64, "events applied twice");
    assert!(
        on_a > 0 && on_b > 0,
        "both hosts share the consumer: {on_a} / {on_b}"
    );
    for host in hosts {
        host.shutdown().await;
    }
}
