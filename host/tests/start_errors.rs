//! A host refuses to start with a clear error, rather than half-starting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weft_host::config::Config;
use weft_host::{Host, StartError};

async fn start_with(wasm: &std::path::Path) -> Result<Host, StartError> {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "version = 1\n[http]\naddr = \"127.0.0.1:0\"\n[data]\ndir = \"{}\"\n[components.x]\nwasm = \"{}\"\n",
        dir.path().display(),
        wasm.display()
    );
    Host::start(Config::parse(&toml, dir.path()).unwrap()).await
}

#[tokio::test]
async fn a_missing_wasm_file_says_how_to_build_it() {
    let err = start_with(std::path::Path::new("/nonexistent/x.wasm"))
        .await
        .err()
        .expect("started without its component");
    let message = err.to_string();
    assert!(matches!(err, StartError::Load { .. }), "{message}");
    assert!(
        message.contains("component `x`") && message.contains("just build"),
        "{message}"
    );
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0 definitely not a component").unwrap();
    let err = start_with(&bad)
        .await
        .err()
        .expect("started a broken component");
    assert!(matches!(err, StartError::Load { .. }), "{err}");
}

#[tokio::test]
async fn an_unreachable_nats_server_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse("version = 1\n", dir.path()).unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    config
        .apply_env([("WEFT_NATS_URL".to_string(), url.clone())])
        .unwrap();
    let err = Host::start(config)
        .await
        .err()
        .expect("started without NATS");
    let text = err.to_string();
    assert!(
        text.contains("cannot connect to NATS") && text.contains(&url),
        "{text}"
    );
}
