//! nsm's tests through the host's component harness (`weft_host::testing`):
//! the built component in a host of its own, a temporary database and a
//! capturing bus. Run with `just test-component nsm`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, UNIX_EPOCH};

use rusqlite::types::Value as Sql;
use serde_json::{json, Value};
use weft_host::bus::Event;
use weft_host::http::{Bytes, Request, StatusCode};
use weft_host::testing::{ComponentTest, ComponentTestBuilder};

fn component() -> ComponentTestBuilder {
    ComponentTest::from_file(
        "nsm",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../components/target/wasm32-wasip2/release/nsm.wasm"
        ),
    )
}

#[tokio::test]
async fn it_loads_and_answers_health() {
    let t = component().start().await.unwrap();
    let (status, health) = t.get_json("/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    t.stop().await;
}

// --- helpers -----------------------------------------------------------------

async fn count(t: &ComponentTest, sql: &str) -> i64 {
    let rows = t.rows(sql).await.unwrap();
    match rows.rows.first().and_then(|row| row.first()) {
        Some(Sql::Integer(n)) => *n,
        other => panic!("{sql} gave {other:?}"),
    }
}

fn event(id: &str, event_type: &str, data: Value) -> Event {
    Event {
        id: id.into(),
        event_type: event_type.into(),
        source: "test".into(),
        data,
        timestamp: "2026-01-01T00:00:00Z".into(),
        correlation_id: format!("corr-{id}"),
        causation_id: None,
        traceparent: None,
    }
}

fn registered(id: &str, user: &str) -> Event {
    event(
        id,
        "user.registered",
        json!({"userId": user, "username": "ada", "email": "ada@example.com", "orgId": "o1"}),
    )
}

fn account_created(id: &str, user: &str, account: &str) -> Event {
    event(
        id,
        "account.created",
        json!({"accountId": account, "userId": user, "accountType": "savings", "balance": 0}),
    )
}

async fn notifications(t: &ComponentTest, token: &str) -> Vec<Value> {
    let (status, body) = t.get_json("/notifications", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

async fn mark_read(t: &ComponentTest, token: Option<&str>, id: &str) -> (StatusCode, Value) {
    t.send_json("POST", &format!("/notifications/{id}/read"), token, None)
        .await
}

fn assert_error(status: StatusCode, body: &Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

// --- events ------------------------------------------------------------------

#[tokio::test]
async fn user_registered_makes_a_welcome_notification() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();

    let token = t.token("u1", "o1", &["user"]);
    let list = notifications(&t, &token).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(
        list[0],
        json!({"id": id, "userId": "u1", "kind": "welcome",
               "title": "Welcome to Weft, ada!",
               "body": "Hi ada, your account is ready. We are opening a savings account for you.",
               "createdAt": "2026-01-01T00:00:00Z", "readAt": null})
    );
    assert_eq!(
        t.rows("SELECT owner_org_id, source_event_id FROM notifications")
            .await
            .unwrap()
            .rows,
        vec![vec![Sql::Text("o1".into()), Sql::Text("evt-1".into())]]
    );
}

#[tokio::test]
async fn a_welcome_without_a_username_still_reads_well() {
    let t = component().start().await.unwrap();
    for (n, data) in [
        json!({"userId": "u1"}),
        json!({"userId": "u1", "username": ""}),
    ]
    .into_iter()
    .enumerate()
    {
        t.deliver(event(&format!("evt-{n}"), "user.registered", data))
            .await
            .unwrap();
    }
    let token = t.token("u1", "", &["user"]);
    let list = notifications(&t, &token).await;
    assert_eq!(list.len(), 2, "{list:?}");
    for notification in list {
        assert_eq!(notification["title"], "Welcome to Weft!");
        assert_eq!(
            notification["body"],
            "Your account is ready. We are opening a savings account for you."
        );
    }
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM notifications WHERE owner_org_id = ''"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn account_created_makes_an_account_notification() {
    let t = component().start().await.unwrap();
    t.deliver(account_created("evt-1", "u1", "acc-42"))
        .await
        .unwrap();

    let token = t.token("u1", "o1", &["user"]);
    let list = notifications(&t, &token).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["kind"], "account_created");
    assert_eq!(list[0]["userId"], "u1");
    assert_eq!(list[0]["title"], "Your savings account is open");
    assert_eq!(
        list[0]["body"],
        "Account acc-42 is ready, with a balance of 0."
    );
    assert_eq!(list[0]["readAt"], Value::Null);
}

#[tokio::test]
async fn account_created_without_type_or_balance_still_reads_well() {
    let t = component().start().await.unwrap();
    t.deliver(event(
        "evt-1",
        "account.created",
        json!({"accountId": "acc-1", "userId": "u1"}),
    ))
    .await
    .unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let list = notifications(&t, &token).await;
    assert_eq!(list[0]["title"], "Your new account is open");
    assert_eq!(
        list[0]["body"],
        "Account acc-1 is ready, with a balance of 0."
    );
}

#[tokio::test]
async fn each_new_notification_publishes_notification_sent_in_the_events_correlation() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    t.deliver(account_created("evt-2", "u1", "acc-1"))
        .await
        .unwrap();

    let stored = t
        .rows("SELECT id, kind, source_event_id FROM notifications ORDER BY seq")
        .await
        .unwrap()
        .rows;
    let published = t.take_published();
    assert_eq!(published.len(), 2, "{published:?}");
    for (event, row) in published.iter().zip(&stored) {
        let (Sql::Text(id), Sql::Text(kind), Sql::Text(cause)) = (&row[0], &row[1], &row[2]) else {
            panic!("{row:?}")
        };
        assert_eq!(event.event_type, "notification.sent");
        assert_eq!(event.source, "nsm");
        assert_eq!(
            event.data,
            json!({"notificationId": id, "userId": "u1", "kind": kind})
        );
        assert_eq!(event.causation_id.as_deref(), Some(cause.as_str()));
        assert_eq!(event.correlation_id, format!("corr-{cause}"));
        assert_eq!(event.timestamp, "2026-01-01T00:00:00Z");
    }
}

#[tokio::test]
async fn a_redelivered_event_makes_no_second_notification() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    t.deliver(account_created("evt-2", "u1", "acc-1"))
        .await
        .unwrap();
    t.deliver(account_created("evt-2", "u1", "acc-1"))
        .await
        .unwrap();

    assert_eq!(count(&t, "SELECT count(*) FROM notifications").await, 2);
    let kinds: Vec<Value> = t
        .published()
        .iter()
        .map(|e| e.data["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("welcome"), json!("account_created")]);
}

#[tokio::test]
async fn dedup_is_by_event_id_so_another_event_makes_another_notification() {
    let t = component().start().await.unwrap();
    // Unlike bpm's one default account per user, nsm keeps one notification
    // per event: a second registration event is a second welcome.
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    t.deliver(registered("evt-2", "u1")).await.unwrap();
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM notifications WHERE owner_user_id = 'u1'"
        )
        .await,
        2
    );
    assert_eq!(t.published().len(), 2);
}

#[tokio::test]
async fn other_events_make_no_notification() {
    let t = component().start().await.unwrap();
    for (n, event_type) in ["transaction.completed", "notification.sent", "user.deleted"]
        .into_iter()
        .enumerate()
    {
        t.deliver(event(
            &format!("evt-{n}"),
            event_type,
            json!({"userId": "u1", "notificationId": "n1", "kind": "welcome"}),
        ))
        .await
        .unwrap();
    }
    assert_eq!(count(&t, "SELECT count(*) FROM notifications").await, 0);
    assert!(t.published().is_empty(), "{:?}", t.published());
}

#[tokio::test]
async fn malformed_event_data_fails_the_event_and_stores_nothing() {
    let t = component().start().await.unwrap();
    for (event_type, data) in [
        ("user.registered", json!({"username": "ada"})),
        ("user.registered", json!({"userId": ""})),
        ("user.registered", json!({"userId": 7})),
        ("account.created", json!({"userId": "u1"})),
        ("account.created", json!({"accountId": "a1", "userId": ""})),
        (
            "account.created",
            json!({"accountId": "a1", "userId": "u1", "balance": 1.5}),
        ),
    ] {
        let result = t.event(event_type, data.clone()).await;
        assert!(result.is_err(), "{event_type} {data} was accepted");
    }
    assert_eq!(count(&t, "SELECT count(*) FROM notifications").await, 0);
    assert!(t.published().is_empty(), "{:?}", t.published());
}

#[tokio::test]
async fn a_failed_event_can_be_redelivered_once_fixed_upstream() {
    let t = component().start().await.unwrap();
    // The failed attempt rolled back, so its id is not taken: a later
    // delivery with the same id still makes the notification.
    let mut broken = registered("evt-1", "u1");
    broken.data = json!({"userId": ""});
    assert!(t.deliver(broken).await.is_err());
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    assert_eq!(count(&t, "SELECT count(*) FROM notifications").await, 1);
    assert_eq!(t.published().len(), 1);
}

#[tokio::test]
async fn a_notification_whose_event_cannot_be_published_is_not_kept() {
    let t = component()
        .with(|mut c| {
            c.grants.publish = Vec::new();
            c
        })
        .start()
        .await
        .unwrap();
    // Failing the event (rather than keeping a notification nobody heard
    // of) lets the bus deliver it again once the grant is fixed.
    assert!(t.deliver(registered("evt-1", "u1")).await.is_err());
    assert_eq!(count(&t, "SELECT count(*) FROM notifications").await, 0);
    assert!(t.published().is_empty());
}

// --- routes ------------------------------------------------------------------

#[tokio::test]
async fn a_user_lists_only_their_own_notifications_newest_first() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    t.advance(Duration::from_secs(60));
    t.deliver(registered("evt-2", "u2")).await.unwrap();
    t.advance(Duration::from_secs(60));
    t.deliver(account_created("evt-3", "u1", "acc-1"))
        .await
        .unwrap();

    let ada = t.token("u1", "o1", &["user"]);
    let list = notifications(&t, &ada).await;
    let seen: Vec<(&str, &str, &str)> = list
        .iter()
        .map(|n| {
            (
                n["userId"].as_str().unwrap(),
                n["kind"].as_str().unwrap(),
                n["createdAt"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("u1", "account_created", "2026-01-01T00:02:00Z"),
            ("u1", "welcome", "2026-01-01T00:00:00Z"),
        ]
    );
    let bob = t.token("u2", "o1", &["user"]);
    let list = notifications(&t, &bob).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["userId"], "u2");
    // An admin is not shown other users' notifications either.
    let admin = t.token("u3", "o1", &["user", "admin"]);
    assert!(notifications(&t, &admin).await.is_empty());
}

#[tokio::test]
async fn listing_honours_limit() {
    let t = component().start().await.unwrap();
    for n in 1..=3 {
        t.deliver(account_created(
            &format!("evt-{n}"),
            "u1",
            &format!("acc-{n}"),
        ))
        .await
        .unwrap();
    }
    let token = t.token("u1", "o1", &["user"]);
    let (status, newest) = t.get_json("/notifications?limit=2", Some(&token)).await;
    assert_eq!(status, 200, "{newest}");
    let bodies: Vec<&str> = newest
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            "Account acc-3 is ready, with a balance of 0.",
            "Account acc-2 is ready, with a balance of 0."
        ]
    );
    for bad in ["0", "1001", "-3", "many"] {
        let (status, body) = t
            .get_json(&format!("/notifications?limit={bad}"), Some(&token))
            .await;
        assert_error(status, &body, 400, "validation_failed");
    }
}

#[tokio::test]
async fn marking_read_sets_read_at_from_the_clock() {
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027-01-15T08:00:00Z
    let t = component().clock(start).start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let id = notifications(&t, &token).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    t.advance(Duration::from_secs(3600));
    let response = t
        .call(
            Request::post(format!("/notifications/{id}/read"))
                .header("authorization", format!("Bearer {token}"))
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert!(response.body().is_empty());

    let list = notifications(&t, &token).await;
    assert_eq!(list[0]["createdAt"], "2027-01-15T08:00:00Z");
    assert_eq!(list[0]["readAt"], "2027-01-15T09:00:00Z");
    assert_eq!(
        t.rows("SELECT read_at, updated_at FROM notifications")
            .await
            .unwrap()
            .rows,
        vec![vec![
            Sql::Text("2027-01-15T09:00:00Z".into()),
            Sql::Text("2027-01-15T09:00:00Z".into())
        ]]
    );
    // Reading publishes nothing; only new notifications do.
    assert_eq!(t.published().len(), 1);
}

#[tokio::test]
async fn marking_read_twice_keeps_the_first_time() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let id = notifications(&t, &token).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    t.advance(Duration::from_secs(60));
    let (status, _) = mark_read(&t, Some(&token), &id).await;
    assert_eq!(status, 204);
    t.advance(Duration::from_secs(60));
    let (status, _) = mark_read(&t, Some(&token), &id).await;
    assert_eq!(status, 204);
    assert_eq!(
        notifications(&t, &token).await[0]["readAt"],
        "2026-01-01T00:01:00Z"
    );
}

#[tokio::test]
async fn marking_read_only_touches_that_notification() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    t.deliver(account_created("evt-2", "u1", "acc-1"))
        .await
        .unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let list = notifications(&t, &token).await;
    let (status, _) = mark_read(&t, Some(&token), list[1]["id"].as_str().unwrap()).await;
    assert_eq!(status, 204);
    let list = notifications(&t, &token).await;
    assert_eq!(list[0]["readAt"], Value::Null);
    assert_eq!(list[1]["readAt"], "2026-01-01T00:00:00Z");
}

#[tokio::test]
async fn someone_elses_notification_is_404_and_stays_unread() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    let ada = t.token("u1", "o1", &["user"]);
    let id = notifications(&t, &ada).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // 404 rather than 403: a stranger cannot tell it from one that does
    // not exist.
    for stranger in [
        t.token("u2", "o1", &["user"]),
        t.token("u3", "o1", &["user", "admin"]),
    ] {
        let (status, body) = mark_read(&t, Some(&stranger), &id).await;
        assert_error(status, &body, 404, "not_found");
    }
    assert_eq!(notifications(&t, &ada).await[0]["readAt"], Value::Null);
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM notifications WHERE read_at IS NULL"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn an_unknown_notification_is_404() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (status, body) = mark_read(&t, Some(&token), "no-such-id").await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn every_route_needs_a_caller() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    let id = match &t.rows("SELECT id FROM notifications").await.unwrap().rows[0][0] {
        Sql::Text(id) => id.clone(),
        other => panic!("{other:?}"),
    };
    let (status, body) = t.get_json("/notifications", None).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body) = mark_read(&t, None, &id).await;
    assert_error(status, &body, 401, "unauthorized");
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM notifications WHERE read_at IS NULL"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow_and_unknown_paths_404() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    for (method, path, allow) in [
        ("POST", "/notifications", "GET"),
        ("DELETE", "/notifications", "GET"),
        ("GET", "/notifications/n1/read", "POST"),
        ("PUT", "/notifications/n1/read", "POST"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::new())
            .unwrap();
        let response = t.call(request).await;
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
    for path in ["/", "/notifications/n1", "/notifications/n1/read/x"] {
        let (status, body) = t.get_json(path, Some(&token)).await;
        assert_error(status, &body, 404, "not_found");
    }
}
