//! The embedding API: a host built from code, components from bytes, no
//! HTTP listener; in-process calls, publish, request, subscribe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use weft_host::http::{Bytes, Request, StatusCode};
use weft_host::{ComponentConfig, Host, HostBuilder, PublishError, StartError};

use common::wasm;

async fn start(dir: &std::path::Path) -> Host {
    let faulty = std::fs::read(wasm("faulty")).unwrap();
    HostBuilder::new()
        .data_dir(dir)
        .component(
            "faulty",
            ComponentConfig::from_bytes(faulty)
                .subscribe(["embed.>"])
                .serve(["faulty.echo"])
                .publish(["faulty.noted"])
                .config_value("greeting", "hi"),
        )
        .component(
            "iam",
            ComponentConfig::from_file(wasm("iam"))
                .publish(["user.registered"])
                .issue_tokens(),
        )
        .start()
        .await
        .unwrap()
}

async fn json_of(host: &Host, request: Request<Bytes>) -> (StatusCode, Value) {
    let response = host.call(request).await;
    let status = response.status();
    (
        status,
        serde_json::from_slice(response.body()).unwrap_or(Value::Null),
    )
}

fn get(path: &str) -> Request<Bytes> {
    Request::get(path).body(Bytes::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_built_from_code_is_driven_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path()).await;
    assert_eq!(host.http_addr(), None, "no listener unless asked for");

    // In-process HTTP, with the gateway's routing, health and error bodies.
    let (status, body) = json_of(&host, get("/faulty/config?key=greeting")).await;
    assert_eq!((status, &body["value"]), (StatusCode::OK, &json!("hi")));
    let (status, body) = json_of(&host, get("/nowhere/x")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
    let (status, body) = json_of(&host, get("/health")).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("ok")));
    let forged = Request::get("/faulty/echo")
        .header("authorization", "Bearer a.b.c")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(host.call(forged).await.status(), StatusCode::UNAUTHORIZED);

    // Events from a component reach the program's subscription.
    let registered = host.subscribe(&["user.*"]).await.unwrap();
    let register = Request::post("/iam/register")
        .header("content-type", "application/json")
        .body(Bytes::from(
            json!({"username": "ada", "email": "ada@example.com", "password": "correct horse battery"})
                .to_string(),
        ))
        .unwrap();
    let (status, user) = json_of(&host, register).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let event = tokio::time::timeout(Duration::from_secs(5), registered.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.event_type, "user.registered");
    assert_eq!(event.data["userId"], user["id"]);

    // The program's events reach a subscribed component.
    let id = host.publish("embed.hello", json!({"n": 1})).await.unwrap();
    assert_eq!(id.len(), 36);
    let stored = common::eventually(Duration::from_secs(5), || async {
        let (_, notes) = json_of(&host, get("/faulty/notes")).await;
        notes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["body"] == "embed.hello")
            .then_some(())
    })
    .await;
    assert!(stored.is_some(), "faulty never handled the program's event");
    assert!(matches!(
        host.publish("embed.*", json!({})).await,
        Err(PublishError::Invalid(_))
    ));
    assert!(matches!(
        host.publish("embed.list", json!([1, 2])).await,
        Err(PublishError::Invalid(_))
    ));

    // Request-reply into a component.
    let reply = host
        .request("faulty.echo", "ping", Duration::from_secs(2))
        .await
        .unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["payload"], "ping");
    assert!(matches!(
        host.request("nobody.home", "x", Duration::from_millis(200))
            .await,
        Err(weft_host::bus::BusError::NoResponder(_))
    ));
    host.shutdown().await;
}

#[tokio::test]
async fn a_bad_configuration_from_code_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = HostBuilder::new()
        .data_dir(dir.path())
        .component(
            "faulty",
            ComponentConfig::from_file(wasm("faulty")).replicas(0),
        )
        .start()
        .await
        .err()
        .expect("started with 0 replicas");
    assert!(matches!(err, StartError::Config(_)), "{err}");
    assert!(err.to_string().contains("replicas"), "{err}");
}
