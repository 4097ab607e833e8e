//! buildings's tests through the host's component harness (`weft_host::testing`):
//! the built component in a host of its own, a temporary database and a
//! capturing bus. Run with `just test-component buildings`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use weft_host::testing::{ComponentTest, ComponentTestBuilder};

fn component() -> ComponentTestBuilder {
    ComponentTest::from_file(
        "buildings",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../components/target/wasm32-wasip2/release/buildings.wasm"
        ),
    )
}

/// The payloads the component sent on `workflows.create`.
type Calls = Arc<Mutex<Vec<Value>>>;

/// The component with a `workflows.create` stub that answers like the
/// workflows component (ids `wf-1`, `wf-2`, …, extra reply fields included)
/// and records every payload it was sent.
fn with_workflows() -> (ComponentTestBuilder, Calls) {
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let builder = component().stub("workflows.create", move |payload| {
        let request: Value = serde_json::from_str(payload).map_err(|e| e.to_string())?;
        let mut seen = seen.lock().unwrap();
        seen.push(request.clone());
        Ok(json!({
            "id": format!("wf-{}", seen.len()),
            "name": request["name"],
            "buildingId": request["buildingId"],
            "status": "pending",
            "handledBy": "workflows-2",
            "orgId": request["orgId"],
            "createdAt": "2025-06-01T00:00:00Z",
        })
        .to_string())
    });
    (builder, calls)
}

/// The rows `sql` selects, each as a JSON object keyed by column.
async fn table(t: &ComponentTest, sql: &str) -> Vec<Value> {
    use rusqlite::types::Value as Sql;
    let rows = t.rows(sql).await.unwrap();
    rows.rows
        .iter()
        .map(|row| {
            let object = rows
                .columns
                .iter()
                .zip(row)
                .map(|(column, value)| {
                    let value = match value {
                        Sql::Null => Value::Null,
                        Sql::Integer(n) => json!(n),
                        Sql::Real(x) => json!(x),
                        Sql::Text(s) => json!(s),
                        Sql::Blob(b) => json!(b),
                    };
                    (column.clone(), value)
                })
                .collect();
            Value::Object(object)
        })
        .collect()
}

async fn count(t: &ComponentTest) -> usize {
    t.rows("SELECT id FROM buildings").await.unwrap().rows.len()
}

async fn create(t: &ComponentTest, token: &str, body: Value) -> (u16, Value) {
    let (status, body) = t.send_json("POST", "/", Some(token), Some(&body)).await;
    (status.as_u16(), body)
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
async fn creating_asks_workflows_create_for_the_new_building_and_callers_org() {
    let (builder, calls) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (status, building) = create(&t, &token, json!({"name": "HQ"})).await;
    assert_eq!(status, 201, "{building}");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![json!({"name": "New Workflow", "buildingId": building["id"], "orgId": "o1"})]
    );
}

#[tokio::test]
async fn a_created_building_is_answered_with_its_workflow_without_reply_extras() {
    let (builder, _) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (status, building) =
        create(&t, &token, json!({"name": "HQ", "address": "1 Main St"})).await;
    assert_eq!(status, 201, "{building}");
    let id = building["id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());
    // The reply's handledBy/orgId/createdAt are the workflow service's
    // business; the contract's workflow has four fields.
    assert_eq!(
        building,
        json!({
            "id": id,
            "name": "HQ",
            "address": "1 Main St",
            "orgId": "o1",
            "createdAt": "2026-01-01T00:00:00Z",
            "workflow": {"id": "wf-1", "name": "New Workflow", "buildingId": id, "status": "pending"},
        })
    );
}

#[tokio::test]
async fn a_created_building_is_stored_with_its_creator_and_workflow() {
    let (builder, _) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (_, building) = create(&t, &token, json!({"name": "HQ"})).await;
    let rows = table(
        &t,
        "SELECT id, name, address, org_id, created_by, created_at, workflow FROM buildings",
    )
    .await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["id"], building["id"]);
    assert_eq!(row["name"], "HQ");
    assert_eq!(row["address"], Value::Null);
    assert_eq!(row["org_id"], "o1");
    assert_eq!(row["created_by"], "u1");
    assert_eq!(row["created_at"], "2026-01-01T00:00:00Z");
    let workflow: Value = serde_json::from_str(row["workflow"].as_str().unwrap()).unwrap();
    assert_eq!(workflow, building["workflow"]);
}

#[tokio::test]
async fn creating_publishes_building_created_with_the_workflow_id() {
    let (builder, _) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (_, building) = create(&t, &token, json!({"name": "HQ", "address": "1 Main St"})).await;
    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    let event = &published[0];
    assert_eq!(event.event_type, "building.created");
    assert_eq!(event.source, "buildings");
    assert_eq!(event.timestamp, "2026-01-01T00:00:00Z");
    assert_eq!(
        event.data,
        json!({
            "buildingId": building["id"],
            "name": "HQ",
            "address": "1 Main St",
            "orgId": "o1",
            "userId": "u1",
            "workflowId": "wf-1",
        })
    );
}

#[tokio::test]
async fn each_building_gets_a_workflow_of_its_own() {
    let (builder, calls) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (_, first) = create(&t, &token, json!({"name": "A"})).await;
    let (_, second) = create(&t, &token, json!({"name": "B"})).await;
    assert_ne!(first["id"], second["id"]);
    assert_eq!(first["workflow"]["id"], "wf-1");
    assert_eq!(second["workflow"]["id"], "wf-2");
    assert_eq!(second["workflow"]["buildingId"], second["id"]);
    assert_eq!(calls.lock().unwrap().len(), 2);
}

async fn assert_refused_upstream(t: &ComponentTest) {
    let token = t.token("u1", "o1", &["user"]);
    let (status, body) = create(t, &token, json!({"name": "HQ"})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "upstream_unavailable", "{body}");
    assert_eq!(count(t).await, 0, "a building was left behind");
    assert!(t.published().is_empty(), "{:?}", t.published());
    let (_, list) = t.get_json("/", Some(&token)).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn a_failing_workflows_service_gives_503_and_leaves_nothing_behind() {
    let t = component()
        .stub("workflows.create", |_| {
            Err("workflows exploded: db at /var/secret".into())
        })
        .start()
        .await
        .unwrap();
    assert_refused_upstream(&t).await;
    // The remote's failure text is not passed on to the client.
    let token = t.token("u1", "o1", &["user"]);
    let (_, body) = create(&t, &token, json!({"name": "HQ"})).await;
    assert!(
        !body.to_string().contains("secret"),
        "leaked the remote error: {body}"
    );
}

#[tokio::test]
async fn without_a_workflows_responder_creation_gives_503_and_leaves_nothing_behind() {
    let t = component().start().await.unwrap();
    assert_refused_upstream(&t).await;
}

#[tokio::test]
async fn a_workflow_reply_for_another_building_is_refused_with_503() {
    let t = component()
        .stub("workflows.create", |_| {
            Ok(
                json!({"id": "wf-1", "name": "New Workflow", "buildingId": "someone-else",
                      "status": "pending"})
                .to_string(),
            )
        })
        .start()
        .await
        .unwrap();
    assert_refused_upstream(&t).await;
}

#[tokio::test]
async fn replies_that_are_not_workflows_are_refused_with_503() {
    // One bad reply per call, in this order.
    let bad = Arc::new(AtomicUsize::new(0));
    let next = bad.clone();
    let t = component()
        .stub("workflows.create", move |payload| {
            let building = serde_json::from_str::<Value>(payload).unwrap()["buildingId"].clone();
            let replies = [
                "not json".to_owned(),
                "[]".to_owned(),
                json!({"id": "wf-1"}).to_string(),
                json!({"id": "", "name": "New Workflow", "buildingId": building, "status": "pending"})
                    .to_string(),
                json!({"id": 7, "name": "New Workflow", "buildingId": building, "status": "pending"})
                    .to_string(),
            ];
            let i = next.fetch_add(1, Ordering::Relaxed);
            Ok(replies[i % replies.len()].clone())
        })
        .start()
        .await
        .unwrap();
    for _ in 0..5 {
        assert_refused_upstream(&t).await;
    }
    assert_eq!(bad.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn the_service_recovers_once_workflows_answers_again() {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = down.clone();
    let t = component()
        .stub("workflows.create", move |payload| {
            if flag.load(Ordering::Relaxed) {
                return Err("down".into());
            }
            let request: Value = serde_json::from_str(payload).unwrap();
            Ok(
                json!({"id": "wf-up", "name": request["name"], "buildingId": request["buildingId"],
                      "status": "pending"})
                .to_string(),
            )
        })
        .start()
        .await
        .unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (status, _) = create(&t, &token, json!({"name": "HQ"})).await;
    assert_eq!(status, 503);
    down.store(false, Ordering::Relaxed);
    let (status, building) = create(&t, &token, json!({"name": "HQ"})).await;
    assert_eq!(status, 201, "{building}");
    assert_eq!(building["workflow"]["id"], "wf-up");
    assert_eq!(count(&t).await, 1);
    assert_eq!(t.published().len(), 1);
}

#[tokio::test]
async fn name_and_address_are_trimmed_and_a_blank_address_is_null() {
    let (builder, _) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (status, building) = create(
        &t,
        &token,
        json!({"name": "  HQ \t", "address": "  1 Main St  "}),
    )
    .await;
    assert_eq!(status, 201, "{building}");
    assert_eq!(building["name"], "HQ");
    assert_eq!(building["address"], "1 Main St");
    for blank in [json!("   "), json!(""), Value::Null] {
        let (status, building) =
            create(&t, &token, json!({"name": "Annex", "address": blank})).await;
        assert_eq!(status, 201, "{building}");
        assert_eq!(building["address"], Value::Null, "address {blank}");
    }
    let (status, building) = create(&t, &token, json!({"name": "Depot"})).await;
    assert_eq!(status, 201);
    assert_eq!(building["address"], Value::Null);
    let published = t.take_published();
    assert_eq!(published[0].data["name"], "HQ");
    assert_eq!(published[0].data["address"], "1 Main St");
    assert_eq!(published[1].data["address"], Value::Null);
}

#[tokio::test]
async fn invalid_bodies_are_400_and_never_ask_for_a_workflow() {
    let (builder, calls) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let bodies = [
        json!({}),
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": 5}),
        json!({"name": null}),
        json!({"address": "1 Main St"}),
        json!({"name": "HQ", "address": 7}),
        json!({"name": "HQ", "floors": 3}),
        json!("HQ"),
        json!(42),
    ];
    for body in bodies {
        let (status, answer) = create(&t, &token, body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed", "{body}");
        assert!(answer["error"]["message"].is_string());
    }
    for raw in ["", "{not json", r#"{"name":"HQ"} trailing"#] {
        let request = weft_host::http::Request::post("/")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(raw.to_owned().into())
            .unwrap();
        let response = t.call(request).await;
        assert_eq!(response.status(), 400, "{raw:?}");
        let answer: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(answer["error"]["code"], "validation_failed", "{raw:?}");
    }
    assert!(calls.lock().unwrap().is_empty(), "asked for a workflow");
    assert_eq!(count(&t).await, 0);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn a_json_array_body_is_not_a_building() {
    let (builder, calls) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (status, answer) = create(&t, &token, json!(["HQ", "1 Main St"])).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "validation_failed");
    assert!(calls.lock().unwrap().is_empty());
    assert_eq!(count(&t).await, 0);
}

#[tokio::test]
async fn validation_messages_name_the_offending_field() {
    let (builder, _) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (_, answer) = create(&t, &token, json!({"name": "HQ", "floors": 3})).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("floors"),
        "{answer}"
    );
    let (_, answer) = create(&t, &token, json!({"name": "   "})).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("name"),
        "{answer}"
    );
}

#[tokio::test]
async fn names_and_addresses_are_limited_in_characters_not_bytes() {
    let (builder, calls) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    // 200 two-byte characters: 400 bytes, still within the limit.
    let longest_name = "é".repeat(200);
    let longest_address = "a".repeat(500);
    let (status, building) = create(
        &t,
        &token,
        json!({"name": longest_name, "address": longest_address}),
    )
    .await;
    assert_eq!(status, 201, "{building}");
    assert_eq!(building["name"], longest_name);

    let (status, answer) = create(&t, &token, json!({"name": "n".repeat(201)})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("name"));
    let (status, answer) = create(
        &t,
        &token,
        json!({"name": "HQ", "address": "a".repeat(501)}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("address"));
    // Surrounding blanks do not count against the limit.
    let padded = format!("  {}  ", "n".repeat(200));
    let (status, _) = create(&t, &token, json!({"name": padded})).await;
    assert_eq!(status, 201);
    assert_eq!(calls.lock().unwrap().len(), 2);
    assert_eq!(count(&t).await, 2);
}

#[tokio::test]
async fn every_route_needs_a_bearer_token() {
    let (builder, calls) = with_workflows();
    let t = builder.start().await.unwrap();
    let body = json!({"name": "HQ"});
    for (method, path, body) in [
        ("POST", "/", Some(&body)),
        ("GET", "/", None),
        ("GET", "/some-id", None),
    ] {
        let (status, answer) = t.send_json(method, path, None, body).await;
        assert_eq!(status, 401, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "unauthorized");
    }
    assert!(calls.lock().unwrap().is_empty());
    assert_eq!(count(&t).await, 0);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn an_invalid_token_is_401_and_creates_nothing() {
    let (builder, calls) = with_workflows();
    let t = builder.start().await.unwrap();
    let (status, answer) = t
        .send_json(
            "POST",
            "/",
            Some("not-a-token"),
            Some(&json!({"name": "HQ"})),
        )
        .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized");
    assert!(calls.lock().unwrap().is_empty());
    assert_eq!(count(&t).await, 0);
}

#[tokio::test]
async fn listing_shows_the_callers_org_newest_first() {
    let (builder, _) = with_workflows();
    let t = builder.start().await.unwrap();
    let ada = t.token("ada", "o1", &["user"]);
    let bob = t.token("bob", "o1", &["user"]);
    let eve = t.token("eve", "o2", &["user"]);
    let (_, a) = create(&t, &ada, json!({"name": "A"})).await;
    let (_, b) = create(&t, &bob, json!({"name": "B"})).await;
    let (_, e) = create(&t, &eve, json!({"name": "E"})).await;

    // An org's buildings are shared by its members, whoever created them.
    for token in [&ada, &bob] {
        let (status, list) = t.get_json("/", Some(token)).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list, json!([b, a]));
    }
    let (_, list) = t.get_json("/", Some(&eve)).await;
    assert_eq!(list, json!([e]));
    let stranger = t.token("zed", "o3", &["user"]);
    let (status, list) = t.get_json("/", Some(&stranger)).await;
    assert_eq!((status.as_u16(), list), (200, json!([])));
}

#[tokio::test]
async fn listing_is_scoped_by_org_even_for_admins() {
    let (builder, _) = with_workflows();
    let t = builder.start().await.unwrap();
    let ada = t.token("ada", "o1", &["user"]);
    create(&t, &ada, json!({"name": "A"})).await;
    let admin = t.token("root", "o2", &["user", "admin"]);
    let (_, list) = t.get_json("/", Some(&admin)).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn listing_takes_a_limit_of_the_newest() {
    let (builder, _) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    for name in ["A", "B", "C"] {
        create(&t, &token, json!({"name": name})).await;
    }
    let (status, list) = t.get_json("/?limit=2", Some(&token)).await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["C", "B"]);
    let (_, list) = t.get_json("/?limit=", Some(&token)).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    for bad in ["0", "1001", "-1", "ten", "1.5"] {
        let (status, answer) = t.get_json(&format!("/?limit={bad}"), Some(&token)).await;
        assert_eq!(status, 400, "limit={bad}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed");
    }
}

#[tokio::test]
async fn get_returns_a_building_of_the_callers_org_and_404_otherwise() {
    let (builder, _) = with_workflows();
    let t = builder.start().await.unwrap();
    let ada = t.token("ada", "o1", &["user"]);
    let (_, building) = create(&t, &ada, json!({"name": "HQ", "address": "1 Main St"})).await;
    let id = building["id"].as_str().unwrap();

    let colleague = t.token("bob", "o1", &["user"]);
    let (status, got) = t.get_json(&format!("/{id}"), Some(&colleague)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, building);
    let (status, got) = t.get_json(&format!("/{id}/"), Some(&ada)).await;
    assert_eq!((status.as_u16(), &got), (200, &building));

    // Another org's building and a missing one look the same.
    let eve = t.token("eve", "o2", &["user"]);
    let (status, other_org) = t.get_json(&format!("/{id}"), Some(&eve)).await;
    assert_eq!(status, 404, "{other_org}");
    assert_eq!(other_org["error"]["code"], "not_found");
    let (status, missing) = t.get_json("/no-such-building", Some(&ada)).await;
    assert_eq!(status, 404);
    assert_eq!(missing, other_org);
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow_and_deeper_paths_404() {
    let (builder, calls) = with_workflows();
    let t = builder.start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    for (method, path, allow) in [
        ("DELETE", "/", "GET, POST"),
        ("PUT", "/", "GET, POST"),
        ("PUT", "/b1", "GET"),
        ("POST", "/b1", "GET"),
        ("DELETE", "/b1", "GET"),
    ] {
        let request = weft_host::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(weft_host::http::Bytes::new())
            .unwrap();
        let response = t.call(request).await;
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let answer: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(answer["error"]["code"], "method_not_allowed");
    }
    for (method, path) in [("GET", "/b1/workflow"), ("POST", "/b1/x/y")] {
        let (status, answer) = t.send_json(method, path, Some(&token), None).await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(answer["error"]["code"], "not_found");
    }
    assert!(calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_bad_workflow_timeout_setting_falls_back_instead_of_failing() {
    let (builder, _) = with_workflows();
    let t = builder
        .with(|c| c.config_value("workflow_timeout_ms", "soon"))
        .start()
        .await
        .unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (status, building) = create(&t, &token, json!({"name": "HQ"})).await;
    assert_eq!(status, 201, "{building}");
}

#[tokio::test]
async fn it_ignores_events_and_serves_no_subjects_or_timers() {
    let (builder, calls) = with_workflows();
    let t = builder.start().await.unwrap();
    t.event(
        "building.created",
        json!({"buildingId": "b1", "name": "HQ", "orgId": "o1"}),
    )
    .await
    .unwrap();
    assert_eq!(count(&t).await, 0);
    assert!(t.published().is_empty());
    let err = t
        .message("workflows.create", r#"{"name":"n","buildingId":"b1"}"#)
        .await
        .unwrap_err();
    assert!(err.contains("NotFound"), "{err}");
    let err = t.tick("generate").await.unwrap_err();
    assert!(err.contains("NotFound"), "{err}");
    assert!(calls.lock().unwrap().is_empty());
}
