//! workflows's tests through the host's component harness (`weft_host::testing`):
//! the built component in a host of its own, a temporary database and a
//! capturing bus. Run with `just test-component workflows`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use serde_json::{json, Value};
use weft_host::testing::{ComponentTest, ComponentTestBuilder};

fn component() -> ComponentTestBuilder {
    ComponentTest::from_file(
        "workflows",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../components/target/wasm32-wasip2/release/workflows.wasm"
        ),
    )
}

/// Sends `workflows.create` with `payload`; the reply as JSON.
async fn create(t: &ComponentTest, payload: Value) -> Value {
    let reply = t
        .message("workflows.create", &payload.to_string())
        .await
        .unwrap();
    serde_json::from_str(&reply).unwrap()
}

async fn count(t: &ComponentTest) -> usize {
    t.rows("SELECT id FROM workflows").await.unwrap().rows.len()
}

fn text(value: &rusqlite::types::Value) -> Option<String> {
    match value {
        rusqlite::types::Value::Text(s) => Some(s.clone()),
        rusqlite::types::Value::Null => None,
        other => panic!("not text: {other:?}"),
    }
}

/// The ids in a list answer, in order.
fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|w| w["id"].as_str().unwrap())
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
async fn create_answers_a_pending_workflow_handled_by_this_replica() {
    let t = component().start().await.unwrap();
    let reply = create(
        &t,
        json!({"name": "New Workflow", "buildingId": "b1", "orgId": "o1"}),
    )
    .await;
    let id = reply["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(
        reply,
        json!({
            "id": id,
            "name": "New Workflow",
            "buildingId": "b1",
            "status": "pending",
            "handledBy": "workflows-1",
            "orgId": "o1",
            "createdAt": "2026-01-01T00:00:00Z",
        })
    );
}

#[tokio::test]
async fn create_stores_the_workflow_it_answers() {
    let t = component().start().await.unwrap();
    let reply = create(
        &t,
        json!({"name": "New Workflow", "buildingId": "b1", "orgId": "o1"}),
    )
    .await;
    let rows = t
        .rows("SELECT id, name, building_id, org_id, status, handled_by, created_at FROM workflows")
        .await
        .unwrap();
    assert_eq!(rows.rows.len(), 1);
    let row: Vec<Option<String>> = rows.rows[0].iter().map(text).collect();
    let expected: Vec<Option<String>> = [
        "id",
        "name",
        "buildingId",
        "orgId",
        "status",
        "handledBy",
        "createdAt",
    ]
    .iter()
    .map(|field| reply[field].as_str().map(str::to_owned))
    .collect();
    assert_eq!(row, expected);
}

#[tokio::test]
async fn create_publishes_workflow_created() {
    let t = component().start().await.unwrap();
    let reply = create(
        &t,
        json!({"name": "New Workflow", "buildingId": "b1", "orgId": "o1"}),
    )
    .await;
    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    let event = &published[0];
    assert_eq!(event.event_type, "workflow.created");
    assert_eq!(event.source, "workflows");
    assert_eq!(
        event.data,
        json!({
            "workflowId": reply["id"],
            "buildingId": "b1",
            "name": "New Workflow",
            "status": "pending",
            "handledBy": "workflows-1",
            "orgId": "o1",
        })
    );
}

#[tokio::test]
async fn each_request_is_handled_once_and_names_the_replica_that_took_it() {
    let t = component().with(|c| c.replicas(3)).start().await.unwrap();
    let mut replicas = BTreeSet::new();
    for i in 0..6 {
        let reply = create(
            &t,
            json!({"name": "New Workflow", "buildingId": format!("b{i}")}),
        )
        .await;
        let handled_by = reply["handledBy"].as_str().unwrap().to_owned();
        let event = t.take_published().pop().unwrap();
        assert_eq!(event.data["handledBy"], handled_by);
        let rows = t
            .rows(&format!(
                "SELECT handled_by FROM workflows WHERE building_id = 'b{i}'"
            ))
            .await
            .unwrap();
        assert_eq!(rows.rows.len(), 1, "one workflow per request");
        assert_eq!(text(&rows.rows[0][0]), Some(handled_by.clone()));
        replicas.insert(handled_by);
    }
    assert_eq!(
        replicas,
        BTreeSet::from(["workflows-1", "workflows-2", "workflows-3"].map(String::from))
    );
}

#[tokio::test]
async fn create_trims_fields_and_treats_a_missing_or_empty_org_as_none() {
    let t = component().start().await.unwrap();
    let reply = create(
        &t,
        json!({"name": "  Fit-out  ", "buildingId": " b1 ", "orgId": "o1"}),
    )
    .await;
    assert_eq!(reply["name"], "Fit-out");
    assert_eq!(reply["buildingId"], "b1");
    for payload in [
        json!({"name": "n", "buildingId": "b2"}),
        json!({"name": "n", "buildingId": "b2", "orgId": null}),
        json!({"name": "n", "buildingId": "b2", "orgId": ""}),
    ] {
        let reply = create(&t, payload.clone()).await;
        assert_eq!(reply["orgId"], Value::Null, "{payload}");
    }
    let orgless = t
        .rows("SELECT org_id FROM workflows WHERE building_id = 'b2'")
        .await
        .unwrap();
    assert!(orgless.rows.iter().all(|row| text(&row[0]).is_none()));
    let published = t.take_published();
    assert_eq!(published.len(), 4);
    assert_eq!(published[3].data["orgId"], Value::Null);
}

#[tokio::test]
async fn create_ignores_fields_it_does_not_know() {
    let t = component().start().await.unwrap();
    let reply = create(
        &t,
        json!({"name": "n", "buildingId": "b1", "orgId": "o1", "priority": 9}),
    )
    .await;
    assert_eq!(reply["buildingId"], "b1");
    assert!(reply.get("priority").is_none());
    assert_eq!(count(&t).await, 1);
}

#[tokio::test]
async fn bad_create_payloads_are_invalid_and_change_nothing() {
    let t = component().start().await.unwrap();
    let long_name = json!({"name": "n".repeat(201), "buildingId": "b1"}).to_string();
    let long_building = json!({"name": "n", "buildingId": "b".repeat(201)}).to_string();
    let bad = [
        "",
        "nope",
        "[]",
        "{}",
        r#"{"name":"n"}"#,
        r#"{"buildingId":"b1"}"#,
        r#"{"name":" ","buildingId":"b1"}"#,
        r#"{"name":"n","buildingId":""}"#,
        r#"{"name":"n","buildingId":"   "}"#,
        r#"{"name":"n","buildingId":5}"#,
        r#"{"name":null,"buildingId":"b1"}"#,
        r#"{"name":"n","buildingId":"b1","orgId":5}"#,
        &long_name,
        &long_building,
    ];
    for payload in bad {
        let err = t.message("workflows.create", payload).await.unwrap_err();
        assert!(err.contains("Invalid"), "{payload:?}: {err}");
    }
    assert_eq!(count(&t).await, 0);
    assert!(t.published().is_empty(), "{:?}", t.published());
}

#[tokio::test]
async fn a_json_array_payload_is_invalid() {
    let t = component().start().await.unwrap();
    let err = t
        .message("workflows.create", r#"["n","b1","o1"]"#)
        .await
        .unwrap_err();
    assert!(err.contains("Invalid"), "{err}");
    assert_eq!(count(&t).await, 0);
}

#[tokio::test]
async fn invalid_messages_name_the_offending_field() {
    let t = component().start().await.unwrap();
    let err = t
        .message("workflows.create", r#"{"name":" ","buildingId":"b1"}"#)
        .await
        .unwrap_err();
    assert!(err.contains("`name`"), "{err}");
    let err = t
        .message("workflows.create", r#"{"name":"n","buildingId":""}"#)
        .await
        .unwrap_err();
    assert!(err.contains("`buildingId`"), "{err}");
}

#[tokio::test]
async fn field_limits_count_characters_not_bytes() {
    let t = component().start().await.unwrap();
    let reply = create(
        &t,
        json!({"name": "é".repeat(200), "buildingId": "ü".repeat(200)}),
    )
    .await;
    assert_eq!(reply["name"], "é".repeat(200));
    assert_eq!(count(&t).await, 1);
}

#[tokio::test]
async fn other_subjects_are_not_found_and_change_nothing() {
    let t = component().start().await.unwrap();
    let err = t
        .message("workflows.delete", r#"{"name":"n","buildingId":"b1"}"#)
        .await
        .unwrap_err();
    assert!(err.contains("NotFound"), "{err}");
    assert_eq!(count(&t).await, 0);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn listing_needs_a_bearer_token() {
    let t = component().start().await.unwrap();
    create(&t, json!({"name": "n", "buildingId": "b1"})).await;
    let (status, answer) = t.get_json("/", None).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized");
    let (status, answer) = t.get_json("/", Some("not-a-token")).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn a_caller_sees_their_orgs_and_orgless_workflows_but_no_other_orgs() {
    let t = component().start().await.unwrap();
    let mine = create(&t, json!({"name": "n", "buildingId": "b1", "orgId": "o1"})).await;
    let orgless = create(&t, json!({"name": "n", "buildingId": "b2"})).await;
    let _theirs = create(&t, json!({"name": "n", "buildingId": "b3", "orgId": "o2"})).await;
    let token = t.token("u1", "o1", &["user"]);
    let (status, list) = t.get_json("/", Some(&token)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list, json!([orgless, mine]));
}

#[tokio::test]
async fn an_admin_sees_every_workflow() {
    let t = component().start().await.unwrap();
    let a = create(&t, json!({"name": "n", "buildingId": "b1", "orgId": "o1"})).await;
    let b = create(&t, json!({"name": "n", "buildingId": "b2"})).await;
    let c = create(&t, json!({"name": "n", "buildingId": "b3", "orgId": "o2"})).await;
    let admin = t.token("root", "o9", &["user", "admin"]);
    let (status, list) = t.get_json("/", Some(&admin)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list, json!([c, b, a]));
}

#[tokio::test]
async fn listing_filters_by_building_id() {
    let t = component().start().await.unwrap();
    let first = create(&t, json!({"name": "n", "buildingId": "b1", "orgId": "o1"})).await;
    let other = create(&t, json!({"name": "n", "buildingId": "b2", "orgId": "o1"})).await;
    let second = create(&t, json!({"name": "m", "buildingId": "b1", "orgId": "o1"})).await;
    let spaced = create(&t, json!({"name": "n", "buildingId": "b 3", "orgId": "o1"})).await;
    let token = t.token("u1", "o1", &["user"]);

    let (_, list) = t.get_json("/?buildingId=b1", Some(&token)).await;
    assert_eq!(list, json!([second, first]));
    let (_, list) = t.get_json("/?buildingId=b%203", Some(&token)).await;
    assert_eq!(list, json!([spaced]));
    let (_, list) = t.get_json("/?buildingId=nope", Some(&token)).await;
    assert_eq!(list, json!([]));
    // An empty filter is no filter.
    let (_, list) = t.get_json("/?buildingId=", Some(&token)).await;
    assert_eq!(
        ids(&list),
        [&spaced, &second, &other, &first].map(|w| w["id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn the_building_filter_keeps_org_visibility() {
    let t = component().start().await.unwrap();
    create(&t, json!({"name": "n", "buildingId": "b1", "orgId": "o2"})).await;
    let token = t.token("u1", "o1", &["user"]);
    let (_, list) = t.get_json("/?buildingId=b1", Some(&token)).await;
    assert_eq!(list, json!([]));
    let admin = t.token("root", "o1", &["user", "admin"]);
    let (_, list) = t.get_json("/?buildingId=b1", Some(&admin)).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn listing_takes_a_limit_of_the_newest() {
    let t = component().start().await.unwrap();
    let mut made = Vec::new();
    for i in 0..4 {
        made.push(
            create(
                &t,
                json!({"name": "n", "buildingId": format!("b{i}"), "orgId": "o1"}),
            )
            .await,
        );
    }
    let token = t.token("u1", "o1", &["user"]);
    let (status, list) = t.get_json("/?limit=2", Some(&token)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list, json!([made[3], made[2]]));
    for bad in ["0", "1001", "-3", "x", "2.5"] {
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
    for (method, path) in [("GET", "/w1"), ("DELETE", "/w1"), ("GET", "/w1/steps")] {
        let (status, answer) = t.send_json(method, path, Some(&token), None).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found");
    }
    assert_eq!(count(&t).await, 0);
}

#[tokio::test]
async fn it_ignores_events_and_has_no_timers() {
    let t = component().start().await.unwrap();
    t.event(
        "building.created",
        json!({"buildingId": "b1", "orgId": "o1"}),
    )
    .await
    .unwrap();
    assert_eq!(count(&t).await, 0);
    let err = t.tick("cleanup").await.unwrap_err();
    assert!(err.contains("NotFound"), "{err}");
    assert!(t.published().is_empty());
}
