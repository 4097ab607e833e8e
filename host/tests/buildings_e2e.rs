//! Buildings, workflows (3 replicas serving `workflows.create` by
//! request-reply) and alarms (a timer-driven generator, a processor with 2
//! replicas), end to end on the local bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{buildings_config, eventually, wasm, TestHost};
use serde_json::{json, Value};

async fn start(with_workflows: bool, extra: &str) -> TestHost {
    let dir = tempfile::tempdir().unwrap();
    let toml = buildings_config(dir.path(), with_workflows, extra);
    TestHost::start_toml(dir, &toml).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_buildings_get_thirty_workflows_from_all_three_replicas() {
    let t = start(true, "").await;
    let (_, token) = t.user("owner").await;
    let mut by_replica: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..30 {
        let (s, b) = t
            .post(
                "/buildings",
                &token,
                &json!({"name": format!("Tower {i}"), "address": "1 Main St"}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let id = b["id"].as_str().unwrap();
        assert_eq!(b["workflow"]["buildingId"], id);
        assert_eq!(b["workflow"]["name"], "New Workflow");
        assert!(
            b["workflow"]["id"].is_string() && b["workflow"]["status"].is_string(),
            "{b}"
        );
        let (s, wfs) = t.get(&format!("/workflows?buildingId={id}"), &token).await;
        assert_eq!(s, 200, "{wfs}");
        let wfs = wfs.as_array().unwrap();
        assert_eq!(wfs.len(), 1, "building {id} has {} workflows", wfs.len());
        assert_eq!(wfs[0]["id"], b["workflow"]["id"]);
        *by_replica
            .entry(wfs[0]["handledBy"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let replicas: BTreeSet<&str> = by_replica.keys().map(String::as_str).collect();
    assert_eq!(
        replicas,
        BTreeSet::from(["workflows-1", "workflows-2", "workflows-3"]),
        "{by_replica:?}"
    );
    assert_eq!(by_replica.values().sum::<usize>(), 30);
    let (_, all) = t.get("/workflows?limit=1000", &token).await;
    assert_eq!(all.as_array().unwrap().len(), 30);

    let (_, list) = t.get("/buildings", &token).await;
    assert_eq!(list.as_array().unwrap().len(), 30);
    let first = list[0]["id"].as_str().unwrap().to_owned();
    let (s, one) = t.get(&format!("/buildings/{first}"), &token).await;
    assert_eq!((s, one["id"].clone()), (200, json!(first)));
    // Another org sees none of them.
    let (_, stranger) = t.user("stranger").await;
    let (_, theirs) = t.get("/buildings", &stranger).await;
    assert!(theirs.as_array().unwrap().is_empty(), "{theirs}");
    let (s, _) = t.get(&format!("/buildings/{first}"), &stranger).await;
    assert_eq!(s, 404);
    let (s, _) = t.get("/buildings", "not-a-token").await;
    assert_eq!(s, 401);

    // building.created and workflow.created share the request's correlation.
    let r = t
        .client
        .post(t.url("/buildings"))
        .bearer_auth(&token)
        .header("x-correlation-id", "bld-1")
        .json(&json!({"name": "Annex"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let admin = t.admin().await;
    let types = eventually(Duration::from_secs(5), || async {
        let (_, logs) = t.get("/lgm/logs?correlationId=bld-1", &admin).await;
        let types: BTreeSet<String> = logs
            .as_array()?
            .iter()
            .filter_map(|e| e["eventType"].as_str().map(str::to_owned))
            .collect();
        (types.contains("building.created") && types.contains("workflow.created")).then_some(types)
    })
    .await;
    assert!(
        types.is_some(),
        "building.created / workflow.created missing from the audit trail"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_workflows_a_building_is_refused_with_503_and_not_stored() {
    let t = start(false, "").await;
    let (_, token) = t.user("owner").await;
    let (s, body) = t
        .post("/buildings", &token, &json!({"name": "Nowhere"}))
        .await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    let (_, list) = t.get("/buildings", &token).await;
    assert!(list.as_array().unwrap().is_empty(), "{list}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_workflows_stalled_a_building_is_refused_with_503_and_not_stored() {
    // A responder that never answers: the faulty component told to stall.
    let stalled = format!(
        "[components.stalled]\nwasm = \"{}\"\nserve = [\"workflows.create\"]\n[components.stalled.grants]\nrequest = [\"faulty.echo\"]\n[components.stalled.config]\nstall = \"true\"\n[components.stalled.limits]\ntimeout_ms = 2000\n",
        wasm("faulty").display()
    );
    let t = start(false, &stalled).await;
    let (_, token) = t.user("owner").await;
    let started = std::time::Instant::now();
    let (s, body) = t
        .post("/buildings", &token, &json!({"name": "Slowtown"}))
        .await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?} for a 300 ms timeout",
        started.elapsed()
    );
    let (_, list) = t.get("/buildings", &token).await;
    assert!(list.as_array().unwrap().is_empty(), "{list}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_appear_on_the_timer_and_each_is_processed_once() {
    let t = start(true, "").await;
    let (_, token) = t.user("owner").await;
    let (s, _) = t
        .post("/buildings", &token, &json!({"name": "Watched"}))
        .await;
    assert_eq!(s, 201);
    let admin = t.admin().await;
    let alarms = eventually(Duration::from_secs(10), || async {
        let (_, a) = t.get("/alarms?limit=1000", &admin).await;
        let a = a.as_array()?.clone();
        (a.len() >= 8).then_some(a)
    })
    .await
    .expect("fewer than 8 alarms after 10 s with a 100 ms timer");
    let severities = ["low", "medium", "high", "critical"];
    for a in &alarms {
        assert!(severities.contains(&a["severity"].as_str().unwrap()), "{a}");
    }
    let ids: BTreeSet<&str> = alarms.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), alarms.len(), "an alarm was stored twice");
    // Newest first, filter by severity, the owner's org sees its building's alarms.
    let (_, high) = t.get("/alarms?severity=high&limit=1000", &admin).await;
    assert!(high
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["severity"] == "high"));
    let (s, _) = t.get("/alarms?severity=nope", &admin).await;
    assert_eq!(s, 400);

    // Every alarm.created was processed exactly once, across both replicas.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, created) = t
        .get("/lgm/logs?eventType=alarm.created&limit=1000", &admin)
        .await;
    let (_, processed) = t
        .get("/lgm/logs?eventType=alarm.processed&limit=1000", &admin)
        .await;
    let created: BTreeSet<String> = created
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["alarmId"].as_str().unwrap().to_owned())
        .collect();
    let processed_ids: Vec<String> = processed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["alarmId"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<&String> = processed_ids.iter().collect();
    assert_eq!(
        unique.len(),
        processed_ids.len(),
        "an alarm was processed twice"
    );
    // Allow for alarms created in the last instants and still in flight.
    let missing: Vec<&String> = created.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        missing.len() <= 2,
        "{} alarm.created never processed",
        missing.len()
    );
    let replicas: BTreeSet<&str> = processed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["processedBy"].as_str())
        .collect();
    assert!(
        replicas.iter().all(|r| r.starts_with("alarms-")),
        "{replicas:?}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_every_component_with_version_and_instances() {
    let t = start(true, "").await;
    let h: Value = t.json("/health").await;
    assert_eq!(h["status"], "ok", "{h}");
    let expect = [
        ("iam", 1),
        ("lgm", 1),
        ("buildings", 1),
        ("workflows", 3),
        ("alarms-generator", 1),
        ("alarms", 2),
    ];
    for (name, instances) in expect {
        let c = &h["components"][name];
        assert_eq!(c["instances"], instances, "{name}: {c}");
        let file = if name == "alarms-generator" {
            "alarmgen"
        } else {
            name
        };
        let bytes = std::fs::read(wasm(file)).unwrap();
        assert_eq!(
            c["version"],
            weft_host::engine::sha256_hex(&bytes),
            "{name}"
        );
        assert!(c["handled"].is_u64() && c["failed"].is_u64(), "{c}");
    }
    let w: Value = t.json("/workflows/health").await;
    assert_eq!(w, h["components"]["workflows"]);
    t.stop().await;
}
