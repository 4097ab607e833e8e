//! End to end through the real host: real components, a real listener on a
//! free port, a real HTTP client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{eventually, wasm, TestHost};
use serde_json::{json, Value};

/// The audit trail of one correlation id, as an admin sees it.
async fn logs(t: &TestHost, correlation_id: &str) -> Vec<Value> {
    let admin = t.admin().await;
    let (status, body) = t
        .get(&format!("/lgm/logs?correlationId={correlation_id}"), &admin)
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

fn register_body(name: &str) -> Value {
    json!({"username": name, "email": format!("{name}@example.com"), "password": "correct horse battery"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_emits_an_event_that_lgm_keeps_under_the_correlation_id() {
    let t = TestHost::start().await;
    let r = t
        .client
        .post(t.url("/iam/register"))
        .header("x-correlation-id", "corr-register-1")
        .json(&register_body("ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-correlation-id"], "corr-register-1");
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["username"], "ada");
    assert_eq!(user["email"], "ada@example.com");
    assert!(user["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(user["orgId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(user.get("password").is_none() && user.get("passwordHash").is_none());

    let events = eventually(Duration::from_secs(5), || async {
        let events = logs(&t, "corr-register-1").await;
        events
            .iter()
            .any(|e| e["eventType"] == "user.registered")
            .then_some(events)
    })
    .await
    .expect("user.registered never reached lgm");
    let registered: Vec<&Value> = events
        .iter()
        .filter(|e| e["eventType"] == "user.registered")
        .collect();
    assert_eq!(registered.len(), 1, "{events:?}");
    let e = registered[0];
    assert_eq!(e["eventType"], "user.registered");
    assert_eq!(e["source"], "iam");
    assert_eq!(e["correlationId"], "corr-register-1");
    assert_eq!(e["data"]["userId"], user["id"]);
    assert_eq!(e["data"]["username"], "ada");
    assert_eq!(e["data"]["orgId"], user["orgId"]);
    assert!(e["id"].as_str().is_some_and(|s| s.len() == 36));
    assert!(e["timestamp"].as_str().is_some_and(|s| s.ends_with('Z')));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_contract_error_body() {
    let t = TestHost::start().await;
    let r = t
        .client
        .post(t.url("/iam/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));

    for bad in [
        json!({"username": "ab", "email": "ab@example.com", "password": "longenough"}),
        json!({"username": "good_name", "email": "not-an-email", "password": "longenough"}),
        json!({"username": "good_name", "email": "g@example.com", "password": "short"}),
        json!({"username": "bad name!", "email": "g@example.com", "password": "longenough"}),
    ] {
        let r = t
            .client
            .post(t.url("/iam/register"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    let r = t.client.get(t.url("/nowhere/x")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    // Over the configured 64 KiB: refused before the component runs.
    let big = "x".repeat(70_000);
    let r = t
        .client
        .post(t.url("/iam/register"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_username_or_email_is_a_conflict() {
    let t = TestHost::start().await;
    let first = t
        .client
        .post(t.url("/iam/register"))
        .json(&register_body("grace"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let same_name =
        json!({"username": "GRACE", "email": "other@example.com", "password": "longenough"});
    let same_mail =
        json!({"username": "other", "email": "Grace@Example.com", "password": "longenough"});
    for body in [same_name, same_mail] {
        let r = t
            .client
            .post(t.url("/iam/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "{body}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"]["code"], "conflict");
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_admin_name_is_the_operators_to_create_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let toml = common::test_config(dir.path());
    let t = TestHost::start_toml(dir, &toml).await;
    // A stranger who registers the listed name first gets nothing.
    let r = t
        .client
        .post(t.url("/iam/register"))
        .json(&register_body("Alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["code"], "forbidden");
    // An application admin reaches neither IAM's route nor the admin API.
    let app_admin = t.app_token("u1", "o1", &["user", "admin"]);
    let body = json!({"username": "alice", "email": "alice@example.com", "password": "longenough"});
    let (status, _) = t.post("/iam/admins", &app_admin, &body).await;
    assert_eq!(status, 403);
    let (status, _) = t
        .post("/admin/components/iam/call/admins", &app_admin, &body)
        .await;
    assert_eq!(status, 401);
    assert_eq!(t.login("alice", "longenough").await, Err(401));

    let file = t.dir.path().join("runtime.toml");
    std::fs::write(&file, &toml).unwrap();
    let create = |name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["iam", "create-admin", name, "--email"])
            .arg(format!("{name}@example.com"))
            .args(["--config", file.to_str().unwrap(), "--url", &t.base])
            .env("WEFT_ADMIN_PASSWORD", "correct horse battery")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = create("alice");
    assert!(ok, "{err}");
    assert!(out.starts_with("admin alice created: id "), "{out}");
    let token = t.login("alice", "correct horse battery").await.unwrap();
    let (_, me) = t.get("/iam/me", &token).await;
    assert_eq!(me["roles"], json!(["user", "org_admin", "admin"]), "{me}");
    // Once only; and only listed names.
    let (ok, _, err) = create("alice");
    assert!(!ok && err.contains("409"), "{err}");
    let (ok, _, err) = create("mallory");
    assert!(!ok && err.contains("not_listed"), "{err}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_an_org_takes_an_invitation_that_is_spent_once() {
    let t = TestHost::start().await;
    let (_, ada) = t.user("ada").await;
    let (_, me) = t.get("/iam/me", &ada).await;
    let org = me["orgId"].clone();
    assert_eq!(me["roles"], json!(["user", "org_admin"]), "{me}");
    let join = |name: &str, invitation: Option<&Value>| {
        let mut body = register_body(name);
        body["orgId"] = org.clone();
        if let Some(code) = invitation {
            body["invitation"] = code.clone();
        }
        t.client.post(t.url("/iam/register")).json(&body).send()
    };
    // Knowing the org id is no longer enough.
    let r = join("eve", None).await.unwrap();
    assert_eq!(r.status(), 403);

    let (status, invitation) = t.post("/iam/invitations", &ada, &json!({})).await;
    assert_eq!(status, 201, "{invitation}");
    // Eight registrations race for one code: exactly one gets in.
    let names: Vec<String> = (0..8).map(|i| format!("racer{i}")).collect();
    let answers = futures::future::join_all(
        names
            .iter()
            .map(|name| join(name, Some(&invitation["code"]))),
    )
    .await;
    let mut joined = Vec::new();
    for (name, answer) in names.iter().zip(answers) {
        match answer.unwrap().status().as_u16() {
            201 => joined.push(name.clone()),
            403 => {}
            other => panic!("{name}: {other}"),
        }
    }
    assert_eq!(joined.len(), 1, "{joined:?}");
    let token = t.login(&joined[0], "correct horse battery").await.unwrap();
    let (_, member) = t.get("/iam/me", &token).await;
    assert_eq!(member["orgId"], org);
    assert_eq!(member["roles"], json!(["user"]));
    // A member is no org_admin: no invitations from them.
    let (status, _) = t.post("/iam/invitations", &token, &json!({})).await;
    assert_eq!(status, 403);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_or_looping_component_gets_500_and_the_host_goes_on() {
    let t = TestHost::start().await;
    let r = t.client.get(t.url("/faulty/trap")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal");

    let started = Instant::now();
    let r = t.client.get(t.url("/faulty/loop")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    // Deadline is 300 ms; allow generous slack for a loaded CI machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Others are served while a guest loops.
    let looping = tokio::spawn({
        let (client, url) = (t.client.clone(), t.url("/faulty/loop"));
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let r = t.client.get(t.url("/faulty/ok")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(looping.await.unwrap().unwrap(), 500);

    let r = t
        .client
        .post(t.url("/iam/register"))
        .json(&register_body("after_trap"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let health: Value = t.json("/faulty/health").await;
    assert!(health["failed"].as_u64().unwrap() >= 3, "{health}");
    assert!(health["handled"].as_u64().unwrap() >= 1, "{health}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_committed_or_dispatched_from_a_failed_invocation() {
    let t = TestHost::start().await;
    for (path, status) in [
        ("/faulty/note-then-trap", 500),
        ("/faulty/note-then-500", 500),
    ] {
        let r = t
            .client
            .post(t.url(path))
            .header(
                "x-correlation-id",
                format!("failed{path}").replace('/', "-"),
            )
            .body("doomed")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    // A successful invocation afterwards: its event arrives, and so does the
    // handler's write in faulty (which subscribes to faulty.noted).
    let r = t
        .client
        .post(t.url("/faulty/note"))
        .header("x-correlation-id", "corr-ok")
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    eventually(Duration::from_secs(5), || async {
        (!logs(&t, "corr-ok").await.is_empty()).then_some(())
    })
    .await
    .expect("the successful note's event never arrived");
    let notes: Vec<Value> = eventually(Duration::from_secs(5), || async {
        let notes: Vec<Value> = t.json("/faulty/notes").await;
        notes
            .iter()
            .any(|n| n["body"] == "faulty.noted")
            .then_some(notes)
    })
    .await
    .expect("faulty never handled its own event");
    let bodies: Vec<&str> = notes.iter().filter_map(|n| n["body"].as_str()).collect();
    assert!(bodies.contains(&"kept"), "{bodies:?}");
    assert!(
        !bodies.contains(&"doomed"),
        "a failed invocation's write was committed: {bodies:?}"
    );
    assert_eq!(
        bodies.iter().filter(|b| **b == "faulty.noted").count(),
        1,
        "{bodies:?}"
    );
    for corr in [
        "failed-faulty-note-then-trap",
        "failed-faulty-note-then-500",
    ] {
        assert!(
            logs(&t, corr).await.is_empty(),
            "an event escaped from {corr}"
        );
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_every_component_with_its_version() {
    let t = TestHost::start().await;
    let r = t.client.get(t.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["bus"], json!({"kind": "local", "connected": true}));
    for name in ["iam", "lgm", "faulty", "bpm", "nsm"] {
        let bytes = std::fs::read(wasm(name)).unwrap();
        let c = &h["components"][name];
        assert_eq!(
            c["version"],
            weft_host::engine::sha256_hex(&bytes),
            "{name}"
        );
        assert_eq!(c["status"], "ok");
    }
    assert_eq!(h["components"]["faulty"]["instances"], 2);
    let one: Value = t.json("/iam/health").await;
    assert_eq!(one, h["components"]["iam"]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlation_id_is_made_when_absent_and_the_request_arrives_whole() {
    let t = TestHost::start().await;
    let r = t
        .client
        .get(t.url("/faulty/echo?x=1&y=two"))
        .header("x-test", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let corr = r.headers()["x-correlation-id"].to_str().unwrap().to_owned();
    assert_eq!(corr.len(), 36, "{corr}");
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "x=1&y=two");
    assert_eq!(echo["headers"]["x-test"], "yes");
    assert_eq!(echo["headers"]["x-correlation-id"], corr.as_str());
    assert_eq!(echo["caller"], Value::Null);

    let cfg: Value = t.json("/faulty/config?key=greeting").await;
    assert_eq!(cfg["value"], "hello");
    assert!(cfg["instance"]
        .as_str()
        .is_some_and(|i| i.starts_with("faulty-")));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_graceful_restart() {
    let t = TestHost::start().await;
    let r = t
        .client
        .post(t.url("/iam/register"))
        .json(&register_body("linus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let dir = t.stop().await;
    let t = TestHost::start_in(dir).await;
    let r = t
        .client
        .post(t.url("/iam/register"))
        .json(&register_body("linus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_tick_on_the_replicas() {
    let t = TestHost::start().await;
    let ticks = eventually(Duration::from_secs(5), || async {
        let notes: Vec<Value> = t.json("/faulty/notes").await;
        let ticks: Vec<String> = notes
            .iter()
            .filter_map(|n| n["body"].as_str())
            .filter(|b| b.starts_with("timer:tick:"))
            .map(str::to_owned)
            .collect();
        (ticks.len() >= 4).then_some(ticks)
    })
    .await
    .expect("the 50 ms timer did not tick 4 times in 5 s");
    // Two replicas take turns.
    assert!(
        ticks.iter().any(|b| b.ends_with("faulty-1"))
            && ticks.iter().any(|b| b.ends_with("faulty-2")),
        "{ticks:?}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_keeps_failing_is_degraded_until_it_recovers() {
    let t = TestHost::start().await;
    for _ in 0..weft_host::component::DEGRADED_AFTER {
        let r = t.client.get(t.url("/faulty/trap")).send().await.unwrap();
        assert_eq!(r.status(), 500);
    }
    let h: Value = t.json("/health").await;
    assert_eq!(h["components"]["faulty"]["status"], "degraded", "{h}");
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["components"]["iam"]["status"], "ok");
    let r = t.client.get(t.url("/faulty/ok")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = t.json("/health").await;
    assert_eq!(h["components"]["faulty"]["status"], "ok", "{h}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_reaches_one_replica_and_relays_through_a_component() {
    let t = TestHost::start().await;
    let bus = t.host.as_ref().unwrap().shared().bus.clone();
    let mut instances = std::collections::BTreeSet::new();
    for i in 0..20 {
        let reply = bus
            .request(
                "faulty.echo",
                format!("{{\"n\":{i}}}"),
                "rr".into(),
                None,
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["subject"], "faulty.echo");
        assert_eq!(reply["payload"], format!("{{\"n\":{i}}}"));
        instances.insert(reply["instance"].as_str().unwrap().to_owned());
    }
    assert_eq!(instances.len(), 2, "{instances:?}");
    // faulty.relay asks faulty.echo from inside a component.
    let relayed: Value = serde_json::from_str(
        &bus.request(
            "faulty.relay",
            "{}".into(),
            "rr".into(),
            None,
            Duration::from_secs(2),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(relayed["subject"], "faulty.echo", "{relayed}");
    // Nobody serves it: a typed error, at once.
    let none = bus
        .request(
            "nobody.home",
            "{}".into(),
            "rr".into(),
            None,
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(
        none,
        Err(weft_host::bus::BusError::NoResponder("nobody.home".into()))
    );
    t.stop().await;
}
