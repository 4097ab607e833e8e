//! alarms's tests through the host's component harness (`weft_host::testing`):
//! the built component in a host of its own, a temporary database and a
//! capturing bus. Run with `just test-component alarms`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use weft_host::bus::Event;
use weft_host::testing::{ComponentTest, ComponentTestBuilder};

fn component() -> ComponentTestBuilder {
    ComponentTest::from_file(
        "alarms",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../components/target/wasm32-wasip2/release/alarms.wasm"
        ),
    )
}

/// An `alarm.created` event with id `event_id`, raised at `timestamp`.
fn alarm_event(event_id: &str, timestamp: &str, data: Value) -> Event {
    Event {
        id: event_id.into(),
        event_type: "alarm.created".into(),
        source: "alarms-generator".into(),
        data,
        timestamp: timestamp.into(),
        correlation_id: format!("corr-{event_id}"),
        causation_id: None,
        traceparent: None,
    }
}

/// Raises alarm `id` of `severity` for org `org` (building `b-<id>`).
async fn raise(t: &ComponentTest, id: &str, severity: &str, org: Option<&str>) {
    t.event(
        "alarm.created",
        json!({"alarmId": id, "buildingId": format!("b-{id}"), "severity": severity,
               "message": "Smoke detected", "orgId": org}),
    )
    .await
    .unwrap();
}

async fn count(t: &ComponentTest) -> usize {
    t.rows("SELECT alarm_id FROM alarms")
        .await
        .unwrap()
        .rows
        .len()
}

/// The alarm ids of a list answer, in order.
fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|a| a["alarmId"].as_str().unwrap())
        .collect()
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
async fn an_alarm_is_stored_with_when_it_was_raised_and_processed() {
    let t = component().start().await.unwrap();
    t.advance(Duration::from_secs(90));
    t.deliver(alarm_event(
        "e1",
        "2026-01-01T00:00:00Z",
        json!({"alarmId": "a1", "buildingId": "b1", "severity": "high",
               "message": "Smoke detected", "orgId": "o1"}),
    ))
    .await
    .unwrap();
    let admin = t.token("root", "o1", &["user", "admin"]);
    let (status, list) = t.get_json("/", Some(&admin)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list,
        json!([{
            "id": "a1",
            "alarmId": "a1",
            "buildingId": "b1",
            "severity": "high",
            "message": "Smoke detected",
            "orgId": "o1",
            "processedBy": "alarms-1",
            "createdAt": "2026-01-01T00:00:00Z",
            "processedAt": "2026-01-01T00:01:30Z",
        }])
    );
    let rows = t
        .rows("SELECT event_id FROM alarms WHERE alarm_id = 'a1'")
        .await
        .unwrap();
    assert_eq!(rows.rows[0][0], rusqlite::types::Value::Text("e1".into()));
}

#[tokio::test]
async fn processing_publishes_alarm_processed_caused_by_the_alarm_event() {
    let t = component().start().await.unwrap();
    t.deliver(alarm_event(
        "e1",
        "2026-01-01T00:00:00Z",
        json!({"alarmId": "a1", "buildingId": "b1", "severity": "critical",
               "message": "Smoke detected", "orgId": "o1"}),
    ))
    .await
    .unwrap();
    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    let event = &published[0];
    assert_eq!(event.event_type, "alarm.processed");
    assert_eq!(event.source, "alarms");
    assert_eq!(event.correlation_id, "corr-e1");
    assert_eq!(event.causation_id.as_deref(), Some("e1"));
    assert_eq!(
        event.data,
        json!({"alarmId": "a1", "buildingId": "b1", "severity": "critical",
               "processedBy": "alarms-1", "orgId": "o1"})
    );
}

#[tokio::test]
async fn a_redelivered_event_is_processed_once() {
    let t = component().start().await.unwrap();
    let event = alarm_event(
        "e1",
        "2026-01-01T00:00:00Z",
        json!({"alarmId": "a1", "severity": "low", "message": "m", "orgId": "o1"}),
    );
    t.deliver(event.clone()).await.unwrap();
    t.advance(Duration::from_secs(5));
    t.deliver(event).await.unwrap();
    assert_eq!(count(&t).await, 1);
    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    // The first processing stands.
    let token = t.token("u1", "o1", &["user"]);
    let (_, list) = t.get_json("/", Some(&token)).await;
    assert_eq!(list[0]["processedAt"], "2026-01-01T00:00:00Z");
}

#[tokio::test]
async fn the_same_alarm_under_another_event_id_is_processed_once() {
    let t = component().start().await.unwrap();
    t.deliver(alarm_event(
        "e1",
        "2026-01-01T00:00:00Z",
        json!({"alarmId": "a1", "severity": "low", "message": "first", "orgId": "o1"}),
    ))
    .await
    .unwrap();
    t.deliver(alarm_event(
        "e2",
        "2026-01-01T00:00:05Z",
        json!({"alarmId": "a1", "severity": "critical", "message": "second", "orgId": "o1"}),
    ))
    .await
    .unwrap();
    assert_eq!(count(&t).await, 1);
    assert_eq!(t.take_published().len(), 1);
    let token = t.token("u1", "o1", &["user"]);
    let (_, list) = t.get_json("/", Some(&token)).await;
    assert_eq!(list[0]["message"], "first");
    assert_eq!(list[0]["severity"], "low");
}

#[tokio::test]
async fn processed_by_names_the_replica_that_processed_it() {
    let t = component().with(|c| c.replicas(2)).start().await.unwrap();
    for id in ["a1", "a2", "a3", "a4"] {
        raise(&t, id, "low", Some("o1")).await;
    }
    let admin = t.token("root", "o1", &["user", "admin"]);
    let (_, list) = t.get_json("/", Some(&admin)).await;
    let published = t.take_published();
    let mut replicas = BTreeSet::new();
    for alarm in list.as_array().unwrap() {
        let event = published
            .iter()
            .find(|e| e.data["alarmId"] == alarm["alarmId"])
            .unwrap();
        assert_eq!(event.data["processedBy"], alarm["processedBy"]);
        replicas.insert(alarm["processedBy"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        replicas,
        BTreeSet::from(["alarms-1".to_owned(), "alarms-2".to_owned()])
    );
}

#[tokio::test]
async fn missing_or_empty_optional_fields_are_stored_as_absent() {
    let t = component().start().await.unwrap();
    t.event(
        "alarm.created",
        json!({"alarmId": "a1", "severity": "medium"}),
    )
    .await
    .unwrap();
    t.event(
        "alarm.created",
        json!({"alarmId": "a2", "severity": "medium", "buildingId": "", "orgId": "",
               "message": null}),
    )
    .await
    .unwrap();
    let admin = t.token("root", "o1", &["user", "admin"]);
    let (_, list) = t.get_json("/", Some(&admin)).await;
    for alarm in list.as_array().unwrap() {
        assert_eq!(alarm["buildingId"], Value::Null, "{alarm}");
        assert_eq!(alarm["orgId"], Value::Null, "{alarm}");
        assert_eq!(alarm["message"], "", "{alarm}");
    }
    let published = t.take_published();
    assert_eq!(published.len(), 2);
    assert_eq!(published[0].data["orgId"], Value::Null);
}

#[tokio::test]
async fn extra_fields_in_alarm_created_are_ignored() {
    let t = component().start().await.unwrap();
    t.event(
        "alarm.created",
        json!({"alarmId": "a1", "severity": "high", "orgId": "o1", "sensor": "s-9"}),
    )
    .await
    .unwrap();
    assert_eq!(count(&t).await, 1);
}

#[tokio::test]
async fn malformed_alarm_events_fail_and_change_nothing() {
    let t = component().start().await.unwrap();
    for data in [
        json!({"alarmId": "a1", "severity": "severe"}),
        json!({"alarmId": "a1", "severity": "High"}),
        json!({"alarmId": "a1", "severity": ""}),
        json!({"alarmId": "a1"}),
        json!({"alarmId": "", "severity": "low"}),
        json!({"severity": "low"}),
        json!({"alarmId": 7, "severity": "low"}),
        json!({"alarmId": "a1", "severity": "low", "orgId": 3}),
        json!("a1"),
        json!(null),
    ] {
        let err = t.event("alarm.created", data.clone()).await.unwrap_err();
        assert!(err.contains("Invalid"), "{data}: {err}");
    }
    assert_eq!(count(&t).await, 0);
    assert!(t.published().is_empty(), "{:?}", t.published());
}

#[tokio::test]
async fn other_event_types_are_ignored() {
    let t = component().start().await.unwrap();
    for event_type in ["alarm.processed", "building.created", "alarm.cleared"] {
        t.event(
            event_type,
            json!({"alarmId": "a1", "severity": "low", "orgId": "o1"}),
        )
        .await
        .unwrap();
    }
    assert_eq!(count(&t).await, 0);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn listing_needs_a_bearer_token() {
    let t = component().start().await.unwrap();
    raise(&t, "a1", "low", Some("o1")).await;
    let (status, answer) = t.get_json("/", None).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized");
    let (status, answer) = t.get_json("/", Some("not-a-token")).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn a_caller_sees_only_their_orgs_alarms() {
    let t = component().start().await.unwrap();
    raise(&t, "mine-1", "low", Some("o1")).await;
    raise(&t, "theirs", "low", Some("o2")).await;
    raise(&t, "orgless", "low", None).await;
    raise(&t, "mine-2", "high", Some("o1")).await;
    let token = t.token("u1", "o1", &["user"]);
    let (status, list) = t.get_json("/", Some(&token)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), ["mine-2", "mine-1"]);
    let stranger = t.token("u9", "o9", &["user"]);
    let (_, list) = t.get_json("/", Some(&stranger)).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn an_admin_sees_every_alarm_including_orgless_ones() {
    let t = component().start().await.unwrap();
    raise(&t, "a1", "low", Some("o1")).await;
    raise(&t, "a2", "low", Some("o2")).await;
    raise(&t, "a3", "low", None).await;
    let admin = t.token("root", "o9", &["user", "admin"]);
    let (status, list) = t.get_json("/", Some(&admin)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), ["a3", "a2", "a1"]);
}

#[tokio::test]
async fn listing_filters_by_severity() {
    let t = component().start().await.unwrap();
    raise(&t, "a1", "low", Some("o1")).await;
    raise(&t, "a2", "critical", Some("o1")).await;
    raise(&t, "a3", "medium", Some("o1")).await;
    raise(&t, "a4", "critical", Some("o1")).await;
    raise(&t, "a5", "critical", Some("o2")).await;
    let token = t.token("u1", "o1", &["user"]);
    let (status, list) = t.get_json("/?severity=critical", Some(&token)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), ["a4", "a2"]);
    let (_, list) = t.get_json("/?severity=high", Some(&token)).await;
    assert_eq!(list, json!([]));
    // An empty filter is no filter.
    let (_, list) = t.get_json("/?severity=", Some(&token)).await;
    assert_eq!(ids(&list), ["a4", "a3", "a2", "a1"]);
    let admin = t.token("root", "o1", &["user", "admin"]);
    let (_, list) = t.get_json("/?severity=critical", Some(&admin)).await;
    assert_eq!(ids(&list), ["a5", "a4", "a2"]);
}

#[tokio::test]
async fn an_unknown_severity_is_400() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    for bad in ["severe", "High", "LOW", "1"] {
        let (status, answer) = t.get_json(&format!("/?severity={bad}"), Some(&token)).await;
        assert_eq!(status, 400, "severity={bad}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(bad),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn listing_takes_a_limit_of_the_newest() {
    let t = component().start().await.unwrap();
    for id in ["a1", "a2", "a3", "a4"] {
        raise(&t, id, "low", Some("o1")).await;
    }
    let token = t.token("u1", "o1", &["user"]);
    let (status, list) = t.get_json("/?limit=2", Some(&token)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), ["a4", "a3"]);
    let (_, list) = t.get_json("/?severity=low&limit=1", Some(&token)).await;
    assert_eq!(ids(&list), ["a4"]);
    for bad in ["0", "1001", "-1", "many", "1.5"] {
        let (status, answer) = t.get_json(&format!("/?limit={bad}"), Some(&token)).await;
        assert_eq!(status, 400, "limit={bad}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed");
    }
}

#[tokio::test]
async fn wrong_methods_are_405_and_other_paths_404() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    for method in ["POST", "PUT", "DELETE"] {
        let (status, answer) = t
            .send_json(method, "/", Some(&token), Some(&json!({})))
            .await;
        assert_eq!(status, 405, "{method}: {answer}");
        assert_eq!(answer["error"]["code"], "method_not_allowed");
    }
    for (method, path) in [("GET", "/a1"), ("POST", "/a1/ack")] {
        let (status, answer) = t.send_json(method, path, Some(&token), None).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found");
    }
    assert_eq!(count(&t).await, 0);
}

#[tokio::test]
async fn it_serves_no_subjects_and_has_no_timers() {
    let t = component().start().await.unwrap();
    let err = t.message("alarms.list", "{}").await.unwrap_err();
    assert!(err.contains("NotFound"), "{err}");
    let err = t.tick("generate").await.unwrap_err();
    assert!(err.contains("NotFound"), "{err}");
    assert!(t.published().is_empty());
}
