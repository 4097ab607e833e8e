//! iam's tests through the host's component harness (`weft_host::testing`):
//! the built component in a host of its own, a temporary database and a
//! capturing bus. Run with `just test-component iam`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weft_host::testing::{ComponentTest, ComponentTestBuilder};

fn component() -> ComponentTestBuilder {
    ComponentTest::from_file(
        "iam",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../components/target/wasm32-wasip2/release/iam.wasm"
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
