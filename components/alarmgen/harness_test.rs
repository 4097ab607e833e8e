//! alarms-generator's tests through the host's component harness (`weft_host::testing`):
//! the built component in a host of its own, a temporary database and a
//! capturing bus. Run with `just test-component alarmgen`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use weft_host::testing::{ComponentTest, ComponentTestBuilder};

fn component() -> ComponentTestBuilder {
    ComponentTest::from_file(
        "alarms-generator",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../components/target/wasm32-wasip2/release/alarmgen.wasm"
        ),
    )
}

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

const MESSAGES: [&str; 8] = [
    "Temperature threshold exceeded",
    "Humidity out of range",
    "Smoke detected",
    "Door left open",
    "Power supply fluctuation",
    "Water leak detected",
    "CO2 level high",
    "HVAC unit not responding",
];

async fn building(t: &ComponentTest, id: &str, org: Option<&str>) {
    t.event(
        "building.created",
        json!({"buildingId": id, "name": "HQ", "address": null, "orgId": org,
               "userId": "u1", "workflowId": "w1"}),
    )
    .await
    .unwrap();
}

/// Runs `n` ticks of `generate`; the data of the alarms they raised.
async fn ticks(t: &ComponentTest, n: usize) -> Vec<Value> {
    for _ in 0..n {
        t.tick("generate").await.unwrap();
    }
    t.take_published()
        .into_iter()
        .map(|event| {
            assert_eq!(event.event_type, "alarm.created");
            event.data
        })
        .collect()
}

async fn known(t: &ComponentTest) -> Vec<(String, Option<String>)> {
    let rows = t
        .rows("SELECT building_id, org_id FROM known_buildings ORDER BY building_id")
        .await
        .unwrap();
    rows.rows
        .iter()
        .map(|row| {
            let text = |v: &rusqlite::types::Value| match v {
                rusqlite::types::Value::Text(s) => Some(s.clone()),
                _ => None,
            };
            (text(&row[0]).unwrap(), text(&row[1]))
        })
        .collect()
}

fn assert_well_formed(alarm: &Value) {
    let keys: BTreeSet<&str> = alarm
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["alarmId", "buildingId", "severity", "message", "orgId"]),
        "{alarm}"
    );
    assert_eq!(alarm["alarmId"].as_str().unwrap().len(), 36, "{alarm}");
    assert!(
        SEVERITIES.contains(&alarm["severity"].as_str().unwrap()),
        "{alarm}"
    );
    assert!(
        MESSAGES.contains(&alarm["message"].as_str().unwrap()),
        "{alarm}"
    );
}

#[tokio::test]
async fn it_loads_and_answers_health() {
    let t = component().start().await.unwrap();
    let (status, health) = t.get_json("/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    t.stop().await;
}

#[tokio::test]
async fn a_tick_raises_one_alarm_for_the_only_known_building() {
    let t = component().start().await.unwrap();
    building(&t, "b1", Some("o1")).await;
    t.tick("generate").await.unwrap();
    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    let event = &published[0];
    assert_eq!(event.event_type, "alarm.created");
    assert_eq!(event.source, "alarms-generator");
    assert_eq!(event.timestamp, "2026-01-01T00:00:00Z");
    assert_well_formed(&event.data);
    assert_eq!(event.data["buildingId"], "b1");
    assert_eq!(event.data["orgId"], "o1");
}

#[tokio::test]
async fn with_no_known_building_a_tick_raises_an_alarm_for_no_building() {
    // The source's documented choice (lib.rs): an alarm with null
    // buildingId and orgId, not silence.
    let t = component().start().await.unwrap();
    let alarms = ticks(&t, 3).await;
    assert_eq!(alarms.len(), 3);
    for alarm in &alarms {
        assert_well_formed(alarm);
        assert_eq!(alarm["buildingId"], Value::Null, "{alarm}");
        assert_eq!(alarm["orgId"], Value::Null, "{alarm}");
    }
}

#[tokio::test]
async fn every_tick_raises_exactly_one_alarm_with_a_fresh_id() {
    let t = component().start().await.unwrap();
    building(&t, "b1", Some("o1")).await;
    let alarms = ticks(&t, 25).await;
    assert_eq!(alarms.len(), 25);
    let ids: BTreeSet<&str> = alarms
        .iter()
        .map(|a| a["alarmId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 25, "alarm ids repeat");
    for alarm in &alarms {
        assert_well_formed(alarm);
    }
}

#[tokio::test]
async fn alarms_only_name_known_buildings_with_their_own_org() {
    let t = component().seed(7).start().await.unwrap();
    let orgs = BTreeMap::from([("b1", Some("o1")), ("b2", Some("o2")), ("b3", None)]);
    for (id, org) in &orgs {
        building(&t, id, *org).await;
    }
    let alarms = ticks(&t, 200).await;
    let mut buildings = BTreeSet::new();
    let mut severities = BTreeSet::new();
    let mut messages = BTreeSet::new();
    for alarm in &alarms {
        assert_well_formed(alarm);
        let id = alarm["buildingId"].as_str().unwrap();
        let org = orgs
            .get(id)
            .unwrap_or_else(|| panic!("unknown building {id}"));
        assert_eq!(alarm["orgId"], json!(org), "{alarm}");
        buildings.insert(id);
        severities.insert(alarm["severity"].as_str().unwrap());
        messages.insert(alarm["message"].as_str().unwrap());
    }
    // 200 draws: every building and severity turns up, and more than one
    // message; a generator stuck on one value fails here.
    assert_eq!(buildings, BTreeSet::from(["b1", "b2", "b3"]));
    assert_eq!(severities, BTreeSet::from(SEVERITIES));
    assert!(messages.len() > 4, "{messages:?}");
}

async fn run_with_seed(seed: u64) -> Vec<Value> {
    let t = component().seed(seed).start().await.unwrap();
    for id in ["b1", "b2", "b3", "b4"] {
        building(&t, id, Some("o1")).await;
    }
    ticks(&t, 12).await
}

#[tokio::test]
async fn the_same_seed_raises_the_same_alarms() {
    let first = run_with_seed(42).await;
    let again = run_with_seed(42).await;
    assert_eq!(first, again);
    let other = run_with_seed(43).await;
    assert_ne!(first, other);
    // Not only the ids: what the random bytes pick differs too.
    let picks = |alarms: &[Value]| -> Vec<(Value, Value, Value)> {
        alarms
            .iter()
            .map(|a| {
                (
                    a["buildingId"].clone(),
                    a["severity"].clone(),
                    a["message"].clone(),
                )
            })
            .collect()
    };
    assert_ne!(picks(&first), picks(&other));
}

#[tokio::test]
async fn a_building_is_remembered_once_whatever_the_event_id() {
    let t = component().start().await.unwrap();
    building(&t, "b1", Some("o1")).await;
    // A second event for the same building (another id, another org) is a
    // no-op: the first org stays.
    building(&t, "b1", Some("o2")).await;
    assert_eq!(known(&t).await, [("b1".to_owned(), Some("o1".to_owned()))]);
    for alarm in ticks(&t, 10).await {
        assert_eq!(alarm["buildingId"], "b1");
        assert_eq!(alarm["orgId"], "o1");
    }
}

#[tokio::test]
async fn a_redelivered_building_event_is_a_no_op() {
    let t = component().start().await.unwrap();
    let event = weft_host::bus::Event {
        id: "evt-1".into(),
        event_type: "building.created".into(),
        source: "buildings".into(),
        data: json!({"buildingId": "b1", "orgId": "o1"}),
        timestamp: "2026-01-01T00:00:00Z".into(),
        correlation_id: "c1".into(),
        causation_id: None,
        traceparent: None,
    };
    t.deliver(event.clone()).await.unwrap();
    t.deliver(event).await.unwrap();
    assert_eq!(known(&t).await, [("b1".to_owned(), Some("o1".to_owned()))]);
    assert!(t.published().is_empty(), "remembering raises no alarm");
}

#[tokio::test]
async fn a_building_without_an_org_gives_alarms_without_an_org() {
    let t = component().start().await.unwrap();
    t.event("building.created", json!({"buildingId": "b1"}))
        .await
        .unwrap();
    t.event("building.created", json!({"buildingId": "b2", "orgId": ""}))
        .await
        .unwrap();
    assert_eq!(
        known(&t).await,
        [("b1".to_owned(), None), ("b2".to_owned(), None)]
    );
    for alarm in ticks(&t, 5).await {
        assert_eq!(alarm["orgId"], Value::Null, "{alarm}");
    }
}

#[tokio::test]
async fn malformed_building_events_fail_and_remember_nothing() {
    let t = component().start().await.unwrap();
    for data in [
        json!({"name": "HQ", "orgId": "o1"}),
        json!({"buildingId": "", "orgId": "o1"}),
        json!({"buildingId": 7}),
        json!({"buildingId": "b1", "orgId": 5}),
        json!("b1"),
        json!(null),
    ] {
        let err = t.event("building.created", data.clone()).await.unwrap_err();
        assert!(err.contains("Invalid"), "{data}: {err}");
    }
    assert!(known(&t).await.is_empty());
    // Nothing learnt: alarms still name no building.
    assert_eq!(ticks(&t, 1).await[0]["buildingId"], Value::Null);
}

#[tokio::test]
async fn other_events_are_ignored() {
    let t = component().start().await.unwrap();
    for event_type in ["building.deleted", "workflow.created", "alarm.created"] {
        t.event(event_type, json!({"buildingId": "b1", "orgId": "o1"}))
            .await
            .unwrap();
    }
    assert!(known(&t).await.is_empty());
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn an_unknown_timer_is_not_found_and_raises_nothing() {
    let t = component().start().await.unwrap();
    building(&t, "b1", Some("o1")).await;
    for name in ["generat", "Generate", "cleanup"] {
        let err = t.tick(name).await.unwrap_err();
        assert!(err.contains("NotFound"), "{name}: {err}");
    }
    assert!(t.published().is_empty(), "{:?}", t.published());
}

#[tokio::test]
async fn ticks_do_not_change_what_it_knows() {
    let t = component().start().await.unwrap();
    building(&t, "b1", Some("o1")).await;
    building(&t, "b2", Some("o2")).await;
    let before = known(&t).await;
    ticks(&t, 10).await;
    assert_eq!(known(&t).await, before);
}

#[tokio::test]
async fn it_has_no_routes_and_serves_no_subjects() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user", "admin"]);
    for (method, path) in [("GET", "/"), ("GET", "/alarms"), ("POST", "/generate")] {
        let (status, answer) = t.send_json(method, path, Some(&token), None).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found");
    }
    let err = t.message("alarms.generate", "{}").await.unwrap_err();
    assert!(err.contains("NotFound"), "{err}");
    assert!(t.published().is_empty());
}
