//! lgm's tests through the host's component harness (`weft_host::testing`):
//! the built component in a host of its own, a temporary database and a
//! capturing bus. Run with `just test-component lgm`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use weft_host::bus::Event;
use weft_host::http::{Bytes, Request};
use weft_host::testing::{ComponentTest, ComponentTestBuilder};

fn component() -> ComponentTestBuilder {
    ComponentTest::from_file(
        "lgm",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../components/target/wasm32-wasip2/release/lgm.wasm"
        ),
    )
}

/// An event as another component would publish it.
fn event(id: &str, event_type: &str, source: &str, correlation_id: &str, data: Value) -> Event {
    Event {
        id: id.to_owned(),
        event_type: event_type.to_owned(),
        source: source.to_owned(),
        data,
        timestamp: "2026-01-01T00:00:00Z".to_owned(),
        correlation_id: correlation_id.to_owned(),
        causation_id: None,
        traceparent: None,
    }
}

fn admin(t: &ComponentTest) -> String {
    t.token("root", "o1", &["user", "admin"])
}

fn user(t: &ComponentTest, user_id: &str) -> String {
    t.token(user_id, "o1", &["user"])
}

/// `GET /logs?<query>` as `token`: the ids listed, in order.
async fn ids(t: &ComponentTest, query: &str, token: &str) -> Vec<String> {
    let (status, body) = t.get_json(&format!("/logs?{query}"), Some(token)).await;
    assert_eq!(status, 200, "{query}: {body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn stored(t: &ComponentTest) -> usize {
    t.rows("SELECT id FROM events").await.unwrap().rows.len()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn it_loads_and_answers_health() {
    let t = component().start().await.unwrap();
    let (status, health) = t.get_json("/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    t.stop().await;
}

// --- recording --------------------------------------------------------

#[tokio::test]
async fn every_event_received_is_recorded_whatever_its_type() {
    let t = component().start().await.unwrap();
    t.event(
        "user.registered",
        json!({"userId": "u1", "username": "ada"}),
    )
    .await
    .unwrap();
    t.event(
        "account.created",
        json!({"accountId": "a1", "userId": "u1"}),
    )
    .await
    .unwrap();
    t.event(
        "alarm.created",
        json!({"alarmId": "al1", "severity": "high"}),
    )
    .await
    .unwrap();
    t.event("anything.at_all", json!({})).await.unwrap();

    assert_eq!(stored(&t).await, 4);
    let (status, logs) = t.get_json("/logs", Some(&admin(&t))).await;
    assert_eq!(status, 200, "{logs}");
    let types: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "user.registered",
            "account.created",
            "alarm.created",
            "anything.at_all"
        ]
    );
}

#[tokio::test]
async fn logs_answer_contract_envelopes() {
    let t = component().start().await.unwrap();
    t.event(
        "user.registered",
        json!({"userId": "u1", "username": "ada"}),
    )
    .await
    .unwrap();
    let mut caused = event(
        "e-2",
        "account.created",
        "bpm",
        "corr-9",
        json!({"accountId": "a1", "userId": "u1", "balance": 0}),
    );
    caused.timestamp = "2026-03-04T05:06:07Z".into();
    caused.causation_id = Some("test-event-1".into());
    t.deliver(caused).await.unwrap();

    let (status, logs) = t.get_json("/logs", Some(&admin(&t))).await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(
        logs,
        json!([
            {"id": "test-event-1", "eventType": "user.registered", "source": "test",
             "data": {"userId": "u1", "username": "ada"}, "timestamp": "2026-01-01T00:00:00Z",
             "correlationId": "test", "causationId": null},
            {"id": "e-2", "eventType": "account.created", "source": "bpm",
             "data": {"accountId": "a1", "userId": "u1", "balance": 0},
             "timestamp": "2026-03-04T05:06:07Z", "correlationId": "corr-9",
             "causationId": "test-event-1"}
        ])
    );
}

#[tokio::test]
async fn a_redelivered_event_is_kept_once() {
    let t = component().start().await.unwrap();
    let registered = event(
        "e-1",
        "user.registered",
        "iam",
        "c1",
        json!({"userId": "u1"}),
    );
    t.deliver(registered.clone()).await.unwrap();
    t.deliver(registered.clone()).await.unwrap();

    assert_eq!(stored(&t).await, 1);
    assert_eq!(ids(&t, "", &admin(&t)).await, ["e-1"]);
}

#[tokio::test]
async fn a_redelivery_with_other_content_keeps_the_first_copy() {
    let t = component().start().await.unwrap();
    t.deliver(event(
        "e-1",
        "user.registered",
        "iam",
        "c1",
        json!({"userId": "u1"}),
    ))
    .await
    .unwrap();
    t.deliver(event(
        "e-1",
        "user.changed",
        "other",
        "c2",
        json!({"userId": "u2"}),
    ))
    .await
    .unwrap();

    let (_, logs) = t.get_json("/logs", Some(&admin(&t))).await;
    assert_eq!(logs.as_array().unwrap().len(), 1, "{logs}");
    assert_eq!(logs[0]["eventType"], "user.registered");
    assert_eq!(logs[0]["data"], json!({"userId": "u1"}));
    assert_eq!(ids(&t, "", &user(&t, "u1")).await, ["e-1"]);
    assert!(ids(&t, "", &user(&t, "u2")).await.is_empty());
}

#[tokio::test]
async fn a_redelivery_keeps_the_first_arrival_position() {
    let t = component().start().await.unwrap();
    let first = event("e-1", "a.b", "x", "c", json!({}));
    t.deliver(first.clone()).await.unwrap();
    t.deliver(event("e-2", "a.b", "x", "c", json!({})))
        .await
        .unwrap();
    t.deliver(first).await.unwrap();
    assert_eq!(ids(&t, "", &admin(&t)).await, ["e-1", "e-2"]);
}

#[tokio::test]
async fn data_that_is_not_a_json_object_is_refused_and_not_stored() {
    let t = component().start().await.unwrap();
    for data in [json!([1, 2]), json!("text"), json!(42), json!(null)] {
        let err = t.event("odd.data", data.clone()).await.unwrap_err();
        assert!(err.contains("JSON object"), "{data}: {err}");
    }
    assert_eq!(stored(&t).await, 0);
}

#[tokio::test]
async fn lgm_publishes_nothing() {
    let t = component().start().await.unwrap();
    t.event("user.registered", json!({"userId": "u1"}))
        .await
        .unwrap();
    let (status, _) = t.get_json("/logs", Some(&admin(&t))).await;
    assert_eq!(status, 200);
    assert!(t.published().is_empty(), "{:?}", t.published());
}

// --- visibility -------------------------------------------------------

/// Events of u1, of u2, with no `userId`, with a non-string `userId`, and
/// with a user id only nested deeper in the data.
async fn mixed_owners(t: &ComponentTest) {
    for (id, data) in [
        ("u1-a", json!({"userId": "u1"})),
        ("u2-a", json!({"userId": "u2"})),
        ("nobody", json!({"alarmId": "al1"})),
        ("numeric", json!({"userId": 42})),
        ("nested", json!({"user": {"userId": "u1"}})),
        ("u1-b", json!({"userId": "u1", "accountId": "a1"})),
    ] {
        t.deliver(event(id, "some.thing", "src", "c", data))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_admin_sees_every_event() {
    let t = component().start().await.unwrap();
    mixed_owners(&t).await;
    assert_eq!(
        ids(&t, "", &admin(&t)).await,
        ["u1-a", "u2-a", "nobody", "numeric", "nested", "u1-b"]
    );
}

#[tokio::test]
async fn a_user_sees_only_events_whose_data_user_id_is_theirs() {
    let t = component().start().await.unwrap();
    mixed_owners(&t).await;
    assert_eq!(ids(&t, "", &user(&t, "u1")).await, ["u1-a", "u1-b"]);
    assert_eq!(ids(&t, "", &user(&t, "u2")).await, ["u2-a"]);
    assert!(ids(&t, "", &user(&t, "u3")).await.is_empty());
}

#[tokio::test]
async fn events_without_a_string_user_id_are_for_admins_only() {
    let t = component().start().await.unwrap();
    mixed_owners(&t).await;
    // `userId: 42` is not the string "42", so not user "42"'s either.
    assert!(ids(&t, "", &user(&t, "42")).await.is_empty());
    assert!(ids(&t, "", &user(&t, "")).await.is_empty());
}

#[tokio::test]
async fn the_admin_role_is_matched_exactly() {
    let t = component().start().await.unwrap();
    mixed_owners(&t).await;
    let shouting = t.token("u2", "o1", &["Admin"]);
    assert_eq!(ids(&t, "", &shouting).await, ["u2-a"]);
    let admin_only = t.token("u2", "o1", &["admin"]);
    assert_eq!(ids(&t, "", &admin_only).await.len(), 6);
}

#[tokio::test]
async fn a_caller_without_roles_sees_their_own_events() {
    let t = component().start().await.unwrap();
    mixed_owners(&t).await;
    let bare = t.token("u1", "o1", &[]);
    assert_eq!(ids(&t, "", &bare).await, ["u1-a", "u1-b"]);
}

#[tokio::test]
async fn visibility_ignores_the_callers_org() {
    let t = component().start().await.unwrap();
    mixed_owners(&t).await;
    let elsewhere = t.token("u1", "another-org", &["user"]);
    assert_eq!(ids(&t, "", &elsewhere).await, ["u1-a", "u1-b"]);
}

#[tokio::test]
async fn logs_need_a_caller() {
    let t = component().start().await.unwrap();
    mixed_owners(&t).await;
    let (status, body) = t.get_json("/logs", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
    let (status, body) = t.get_json("/logs", Some("forged.token.here")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
}

// --- filters ----------------------------------------------------------

async fn filterable(t: &ComponentTest) {
    for (id, event_type, source, correlation, user_id) in [
        ("1", "user.registered", "iam", "c1", "u1"),
        ("2", "account.created", "bpm", "c1", "u1"),
        ("3", "notification.sent", "nsm", "c1", "u1"),
        ("4", "user.registered", "iam", "c2", "u2"),
        ("5", "account.created", "bpm", "c2", "u2"),
        ("6", "account.created", "bpm", "c 3", "u1"),
    ] {
        t.deliver(event(
            id,
            event_type,
            source,
            correlation,
            json!({"userId": user_id}),
        ))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn filters_by_correlation_id_event_type_and_source() {
    let t = component().start().await.unwrap();
    filterable(&t).await;
    let admin = admin(&t);
    assert_eq!(ids(&t, "correlationId=c1", &admin).await, ["1", "2", "3"]);
    assert_eq!(
        ids(&t, "eventType=account.created", &admin).await,
        ["2", "5", "6"]
    );
    assert_eq!(ids(&t, "source=iam", &admin).await, ["1", "4"]);
    assert!(ids(&t, "source=nowhere", &admin).await.is_empty());
}

#[tokio::test]
async fn filters_are_anded() {
    let t = component().start().await.unwrap();
    filterable(&t).await;
    let admin = admin(&t);
    assert_eq!(
        ids(&t, "correlationId=c2&eventType=account.created", &admin).await,
        ["5"]
    );
    assert_eq!(
        ids(
            &t,
            "eventType=account.created&source=bpm&correlationId=c1",
            &admin
        )
        .await,
        ["2"]
    );
    assert!(ids(&t, "eventType=user.registered&source=bpm", &admin)
        .await
        .is_empty());
}

#[tokio::test]
async fn filters_match_exactly() {
    let t = component().start().await.unwrap();
    filterable(&t).await;
    let admin = admin(&t);
    assert!(ids(&t, "eventType=account", &admin).await.is_empty());
    assert!(ids(&t, "eventType=ACCOUNT.CREATED", &admin)
        .await
        .is_empty());
    assert!(ids(&t, "source=%25", &admin).await.is_empty());
}

#[tokio::test]
async fn filters_combine_with_visibility() {
    let t = component().start().await.unwrap();
    filterable(&t).await;
    let u1 = user(&t, "u1");
    assert_eq!(ids(&t, "eventType=account.created", &u1).await, ["2", "6"]);
    assert!(ids(&t, "correlationId=c2", &u1).await.is_empty());
    assert_eq!(
        ids(&t, "eventType=user.registered", &user(&t, "u2")).await,
        ["4"]
    );
}

#[tokio::test]
async fn empty_filter_values_are_no_filter() {
    let t = component().start().await.unwrap();
    filterable(&t).await;
    assert_eq!(
        ids(&t, "correlationId=&eventType=&source=&limit=", &admin(&t)).await,
        ["1", "2", "3", "4", "5", "6"]
    );
}

#[tokio::test]
async fn filter_values_are_percent_decoded() {
    let t = component().start().await.unwrap();
    filterable(&t).await;
    let admin = admin(&t);
    assert_eq!(ids(&t, "correlationId=c%203", &admin).await, ["6"]);
    assert_eq!(ids(&t, "correlationId=c+3", &admin).await, ["6"]);
    assert_eq!(
        ids(&t, "%65ventType=user.registered", &admin).await,
        ["1", "4"]
    );
}

#[tokio::test]
async fn the_first_of_a_repeated_parameter_wins() {
    let t = component().start().await.unwrap();
    filterable(&t).await;
    assert_eq!(
        ids(&t, "source=iam&source=bpm", &admin(&t)).await,
        ["1", "4"]
    );
}

#[tokio::test]
async fn unknown_query_parameters_are_ignored() {
    let t = component().start().await.unwrap();
    filterable(&t).await;
    assert_eq!(ids(&t, "userId=u2&page=2", &admin(&t)).await.len(), 6);
}

// --- order and limit --------------------------------------------------

// api.md: "`[envelope…]` in time order (oldest first, of the newest
// `limit`)": an event that arrives late (a retried delivery, say) takes its
// place by its timestamp, for the order and for `limit`.
#[tokio::test]
async fn logs_are_in_time_order_whatever_the_arrival_order() {
    let t = component().start().await.unwrap();
    for (id, timestamp) in [
        ("late", "2026-06-01T00:00:00Z"),
        ("early", "2026-01-01T00:00:00Z"),
        ("middle", "2026-03-01T00:00:00Z"),
    ] {
        let mut e = event(id, "a.b", "x", "c", json!({}));
        e.timestamp = timestamp.into();
        t.deliver(e).await.unwrap();
    }
    let admin = admin(&t);
    assert_eq!(ids(&t, "", &admin).await, ["early", "middle", "late"]);
    assert_eq!(ids(&t, "limit=2", &admin).await, ["middle", "late"]);
}

#[tokio::test]
async fn limit_answers_the_newest_matches_oldest_first() {
    let t = component().start().await.unwrap();
    for n in 1..=5 {
        t.deliver(event(&format!("e{n}"), "a.b", "x", "c", json!({})))
            .await
            .unwrap();
    }
    let admin = admin(&t);
    assert_eq!(ids(&t, "limit=2", &admin).await, ["e4", "e5"]);
    assert_eq!(ids(&t, "limit=1", &admin).await, ["e5"]);
    assert_eq!(ids(&t, "limit=5", &admin).await.len(), 5);
    assert_eq!(ids(&t, "limit=1000", &admin).await.len(), 5);
}

#[tokio::test]
async fn limit_applies_after_filtering_and_visibility() {
    let t = component().start().await.unwrap();
    filterable(&t).await;
    assert_eq!(
        ids(&t, "eventType=account.created&limit=2", &admin(&t)).await,
        ["5", "6"]
    );
    assert_eq!(ids(&t, "limit=2", &user(&t, "u1")).await, ["3", "6"]);
}

#[tokio::test]
async fn without_a_limit_the_newest_100_are_listed() {
    let t = component().start().await.unwrap();
    for n in 1..=101 {
        t.deliver(event(&format!("e{n:03}"), "a.b", "x", "c", json!({})))
            .await
            .unwrap();
    }
    let admin = admin(&t);
    let listed = ids(&t, "", &admin).await;
    assert_eq!(listed.len(), 100);
    assert_eq!(listed.first().unwrap(), "e002");
    assert_eq!(listed.last().unwrap(), "e101");
    assert_eq!(ids(&t, "limit=101", &admin).await.len(), 101);
}

#[tokio::test]
async fn a_bad_limit_is_validation_failed() {
    let t = component().start().await.unwrap();
    filterable(&t).await;
    let admin = admin(&t);
    for bad in [
        "0",
        "1001",
        "-1",
        "ten",
        "1.5",
        "%205",
        "99999999999999999999",
    ] {
        let (status, body) = t
            .get_json(&format!("/logs?limit={bad}"), Some(&admin))
            .await;
        assert_eq!(status, 400, "limit={bad}: {body}");
        assert_eq!(error_code(&body), "validation_failed", "limit={bad}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("limit"), "limit={bad}: {message}");
    }
}

#[tokio::test]
async fn a_bad_limit_is_refused_for_users_too() {
    let t = component().start().await.unwrap();
    let (status, body) = t.get_json("/logs?limit=0", Some(&user(&t, "u1"))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
}

// --- routing ----------------------------------------------------------

#[tokio::test]
async fn only_get_is_allowed_on_logs_and_other_paths_are_not_found() {
    let t = component().start().await.unwrap();
    let admin = admin(&t);
    for method in ["POST", "PUT", "DELETE"] {
        let response = t
            .call(
                Request::builder()
                    .method(method)
                    .uri("/logs")
                    .header("authorization", format!("Bearer {admin}"))
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "GET");
    }
    for path in ["/logs/1", "/log", "/"] {
        let (status, body) = t.get_json(path, Some(&admin)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
}
