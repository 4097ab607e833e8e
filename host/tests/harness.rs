//! The component test harness (`weft_host::testing`) itself: capture,
//! stubs, failures, the fake clock and seeded randomness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;
use weft_host::testing::ComponentTest;

use common::wasm;

#[tokio::test]
async fn events_in_rows_and_events_out() {
    let t = ComponentTest::from_file("faulty", wasm("faulty"))
        .start()
        .await
        .unwrap();
    t.event("any.thing", json!({})).await.unwrap();
    let rows = t.rows("SELECT body FROM notes").await.unwrap();
    assert_eq!(rows.rows.len(), 1);
    assert_eq!(
        rows.rows[0][0],
        rusqlite::types::Value::Text("any.thing".into())
    );
    // A failing handler: Err, and its writes rolled back.
    let err = t.event("faulty.poison", json!({})).await.unwrap_err();
    assert!(err.contains("poison event"), "{err}");
    assert_eq!(t.rows("SELECT * FROM notes").await.unwrap().rows.len(), 1);

    // HTTP in; the published event captured, not delivered anywhere.
    let r = t
        .call(
            weft_host::http::Request::post("/note")
                .body("hello".into())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), 201);
    let published = t.take_published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].event_type, "faulty.noted");
    assert_eq!(published[0].source, "faulty");
    assert_eq!(published[0].data, json!({"note": "hello"}));
    assert!(t.published().is_empty());
    t.stop().await;
}

#[tokio::test]
async fn requests_are_answered_by_stubs() {
    let t = ComponentTest::from_file("faulty", wasm("faulty"))
        .stub("faulty.echo", |payload| Ok(format!("stubbed {payload}")))
        .start()
        .await
        .unwrap();
    // faulty.relay asks faulty.echo and answers its reply.
    assert_eq!(
        t.message("faulty.relay", "ping").await.unwrap(),
        "stubbed ping"
    );
    let t2 = ComponentTest::from_file("faulty", wasm("faulty"))
        .stub("faulty.echo", |_| Err("echo is down".into()))
        .start()
        .await
        .unwrap();
    let err = t2.message("faulty.relay", "ping").await.unwrap_err();
    assert!(err.contains("echo is down"), "{err}");
    // No stub: no responder.
    let t3 = ComponentTest::from_file("faulty", wasm("faulty"))
        .start()
        .await
        .unwrap();
    let err = t3.message("faulty.relay", "ping").await.unwrap_err();
    assert!(err.contains("NoResponder"), "{err}");
}

#[tokio::test]
async fn the_clock_is_fake_and_randomness_is_seeded() {
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027-01-15T08:00:00Z
    let register = |seed: u64| async move {
        let t = ComponentTest::from_file("iam", wasm("iam"))
            .clock(start)
            .seed(seed)
            .start()
            .await
            .unwrap();
        let body = json!({"username": "ada", "email": "ada@example.com", "password": "correct horse battery"});
        let (status, user) = t.send_json("POST", "/register", None, Some(&body)).await;
        assert_eq!(status, 201, "{user}");
        let event = t.take_published().remove(0);
        assert_eq!(event.timestamp, "2027-01-15T08:00:00Z");
        assert_eq!(user["createdAt"], "2027-01-15T08:00:00Z");
        t.advance(Duration::from_secs(60));
        assert_eq!(t.now_rfc3339(), "2027-01-15T08:01:00Z");
        user["id"].as_str().unwrap().to_owned()
    };
    let (a, b, c) = (register(1).await, register(1).await, register(2).await);
    assert_eq!(a, b, "the same seed gives the same ids");
    assert_ne!(a, c);
}
