//! Shared helpers for the host's integration tests: start a real host with
//! the real built components on a free port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weft_host::config::Config;
use weft_host::Host;

/// The built component `name`, or a panic telling how to build it.
pub fn wasm(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../components/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `just build-components` first",
        path.display()
    );
    path
}

/// A runtime.toml for tests: iam, lgm and the faulty test component.
pub fn test_config(data_dir: &Path) -> String {
    format!(
        r#"
version = 1
[http]
addr = "127.0.0.1:0"
max_body_bytes = 65536
[data]
dir = "{data}"
[components.iam]
wasm = "{iam}"
[components.iam.config]
admins = ["alice"]
[components.lgm]
wasm = "{lgm}"
subscribe = ["*"]
[components.faulty]
wasm = "{faulty}"
subscribe = ["faulty.noted", "faulty.poison"]
serve = ["faulty.echo"]
replicas = 2
[components.faulty.limits]
timeout_ms = 300
[components.faulty.config]
greeting = "hello"
"#,
        data = data_dir.display(),
        iam = wasm("iam").display(),
        lgm = wasm("lgm").display(),
        faulty = wasm("faulty").display(),
    )
}

/// A running host and what a test needs to talk to it.
pub struct TestHost {
    pub host: Option<Host>,
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestHost {
    pub async fn start() -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> TestHost {
        let config = Config::parse(&test_config(dir.path()), dir.path()).unwrap();
        let host = Host::start(config).await.unwrap();
        let base = format!("http://{}", host.http_addr().unwrap());
        TestHost {
            host: Some(host),
            base,
            client: reqwest::Client::new(),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(host) = self.host.take() {
            host.shutdown().await;
        }
        self.dir
    }
}

/// Retries `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
