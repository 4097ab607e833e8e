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

/// The start of every test runtime.toml: version, a free port, `data_dir`.
pub fn header(data_dir: &Path) -> String {
    format!(
        "version = 1\n[http]\naddr = \"127.0.0.1:0\"\n[data]\ndir = \"{}\"\n",
        data_dir.display()
    )
}

/// The buildings / workflows / alarms system plus iam (for tokens) and lgm,
/// with `extra` TOML appended (more components, or workflows replaced).
pub fn buildings_config(data_dir: &Path, with_workflows: bool, extra: &str) -> String {
    let workflows = if with_workflows {
        format!(
            "[components.workflows]\nwasm = \"{}\"\nserve = [\"workflows.create\"]\nreplicas = 3\n[components.workflows.grants]\npublish = [\"workflow.created\"]\n",
            wasm("workflows").display()
        )
    } else {
        String::new()
    };
    format!(
        r#"{header}[retry]
backoff_ms = 50
{iam_and_lgm}[components.buildings]
wasm = "{buildings}"
[components.buildings.grants]
publish = ["building.created"]
request = ["workflows.create"]
[components.buildings.config]
workflow_timeout_ms = 300
[components.alarms-generator]
wasm = "{alarmgen}"
route = ""
subscribe = ["building.created"]
[components.alarms-generator.grants]
publish = ["alarm.created"]
[components.alarms-generator.timers]
generate = 100
[components.alarms]
wasm = "{alarms}"
subscribe = ["alarm.created"]
replicas = 2
[components.alarms.grants]
publish = ["alarm.processed"]
{workflows}
{extra}
"#,
        header = header(data_dir),
        iam_and_lgm = iam_and_lgm(),
        buildings = wasm("buildings").display(),
        alarmgen = wasm("alarmgen").display(),
        alarms = wasm("alarms").display(),
    )
}

/// The iam and lgm components, as every test system has them: iam for
/// tokens, lgm for the audit trail of every event.
pub fn iam_and_lgm() -> String {
    format!(
        r#"[components.iam]
wasm = "{iam}"
[components.iam.grants]
publish = ["user.registered", "user.password_changed"]
issue_tokens = true
[components.iam.config]
admins = ["alice"]
[components.lgm]
wasm = "{lgm}"
subscribe = ["*"]
"#,
        iam = wasm("iam").display(),
        lgm = wasm("lgm").display(),
    )
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
[retry]
attempts = 3
backoff_ms = 50
{iam_and_lgm}[components.bpm]
wasm = "{bpm}"
subscribe = ["user.registered"]
[components.bpm.grants]
publish = ["account.created", "transaction.completed"]
[components.nsm]
wasm = "{nsm}"
subscribe = ["user.registered", "account.created"]
websocket = "/ws"
[components.nsm.grants]
publish = ["notification.sent"]
push = true
[components.faulty]
wasm = "{faulty}"
subscribe = ["faulty.noted", "faulty.poison"]
serve = ["faulty.echo", "faulty.relay"]
replicas = 2
[components.faulty.grants]
publish = ["faulty.noted"]
request = ["faulty.echo"]
[components.faulty.limits]
timeout_ms = 300
[components.faulty.timers]
tick = 50
[components.faulty.config]
greeting = "hello"
"#,
        data = data_dir.display(),
        iam_and_lgm = iam_and_lgm(),
        faulty = wasm("faulty").display(),
        bpm = wasm("bpm").display(),
        nsm = wasm("nsm").display(),
    )
}

/// Two `faulty` components: `source`, which may publish `publishes`, and
/// `sink`, which subscribes to `subscribes` and may publish `sink_publishes`
/// (each a TOML list body, e.g. `"faulty.slow"`); `sink_config` lines go
/// into `[components.sink.config]` (none if empty).
pub fn source_and_sink(
    publishes: &str,
    subscribes: &str,
    sink_publishes: &str,
    sink_config: &str,
) -> String {
    let config = if sink_config.is_empty() {
        String::new()
    } else {
        format!("[components.sink.config]\n{sink_config}\n")
    };
    format!(
        r#"[components.source]
wasm = "{faulty}"
[components.source.grants]
publish = [{publishes}]
[components.sink]
wasm = "{faulty}"
subscribe = [{subscribes}]
[components.sink.grants]
publish = [{sink_publishes}]
{config}"#,
        faulty = wasm("faulty").display(),
    )
}

/// A `nats-server` with JetStream of the test's own, on a free port, with
/// its store in a temporary directory; killed when dropped.
pub struct NatsServer {
    server: weft_host::nats_server::NatsServer,
    pub url: String,
    pub port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        Self::start_on(0, tempfile::tempdir().unwrap())
    }

    /// A server on `port` (0: a free one) with the store in `store` (a
    /// restart keeps both).
    pub fn start_on(port: u16, store: tempfile::TempDir) -> NatsServer {
        let server = weft_host::nats_server::NatsServer::start(store.path(), port).unwrap();
        NatsServer {
            url: server.url(),
            port: server.port(),
            server,
            store,
        }
    }

    /// Kills it (as a crash would) and hands back its store.
    pub fn kill(self) -> tempfile::TempDir {
        self.server.kill();
        self.store
    }
}

/// A free `127.0.0.1:<port>` for a host to listen on.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The real `weft` binary running `weft run --config <config>` (plus
/// `args` and `env`) with its HTTP on `addr`; killed if dropped, so that a
/// failed test never leaves a host running. Its stderr goes to `log` and,
/// line by line, to [`WeftProcess::wait_for`].
pub struct WeftProcess {
    process: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// `http://<addr>`.
    pub base: String,
}

impl WeftProcess {
    pub fn start(
        config: &Path,
        addr: &str,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
        log: &Path,
    ) -> WeftProcess {
        use std::io::{BufRead, Write};
        let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["run", "--config", config.to_str().unwrap()])
            .args(args)
            .envs(env.iter().copied())
            .env("WEFT_HTTP_ADDR", addr)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = process.stderr.take().unwrap();
        let mut file = std::fs::File::create(log).unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = writeln!(file, "{line}");
                let _ = tx.send(line); // nobody listening is fine
            }
        });
        WeftProcess {
            process,
            lines,
            base: format!("http://{addr}"),
        }
    }

    /// Waits for a stderr line containing `text`.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Kills it outright, as a crash would (`kill -9`).
    pub fn kill(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// Stops it with SIGTERM and checks that it exited cleanly.
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status();
        let status = self.process.wait().unwrap();
        assert!(status.success(), "weft exited with {status}");
    }
}

impl Drop for WeftProcess {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Whether the tests run over NATS (`WEFT_TEST_BUS=nats`): each test host
/// then gets a `nats-server` of its own.
pub fn over_nats() -> bool {
    std::env::var("WEFT_TEST_BUS").is_ok_and(|v| v == "nats")
}

/// A running host and what a test needs to talk to it.
pub struct TestHost {
    pub host: Option<Host>,
    pub base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub nats: Option<NatsServer>,
}

impl TestHost {
    pub async fn start() -> TestHost {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> TestHost {
        let toml = test_config(dir.path());
        Self::start_toml(dir, &toml).await
    }

    /// Starts a host from `toml` (a whole runtime.toml) in `dir`.
    pub async fn start_toml(dir: tempfile::TempDir, toml: &str) -> TestHost {
        let mut config = Config::parse(toml, dir.path()).unwrap();
        let nats = over_nats().then(NatsServer::start);
        if let Some(server) = &nats {
            config.bus.kind = weft_host::config::BusKind::Nats;
            config.bus.url = Some(server.url.clone());
        }
        let host = Host::start(config).await.unwrap();
        let base = format!("http://{}", host.http_addr().unwrap());
        TestHost {
            host: Some(host),
            base,
            client: reqwest::Client::new(),
            dir,
            nats,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Registers `name` (password `correct horse battery`) and returns
    /// `(user id, access token)`.
    pub async fn user(&self, name: &str) -> (String, String) {
        let password = "correct horse battery";
        let r = self
            .client
            .post(self.url("/iam/register"))
            .json(&serde_json::json!({"username": name, "email": format!("{name}@example.com"), "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "register {name}");
        let user: serde_json::Value = r.json().await.unwrap();
        let token = self.login(name, password).await.expect("login failed");
        (user["id"].as_str().unwrap().to_owned(), token)
    }

    /// Logs in; the access token, or the status on failure.
    pub async fn login(&self, name: &str, password: &str) -> Result<String, u16> {
        let r = self
            .client
            .post(self.url("/iam/login"))
            .json(&serde_json::json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            return Err(r.status().as_u16());
        }
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["tokenType"], "Bearer");
        assert!(body["expiresIn"].as_u64().unwrap() > 0);
        Ok(body["accessToken"].as_str().unwrap().to_owned())
    }

    /// The operator's token for the admin API, minted from the operator
    /// key as the `weft` CLI does.
    pub fn operator(&self) -> String {
        self.host
            .as_ref()
            .expect("host running")
            .shared()
            .operator
            .mint()
            .unwrap()
    }

    /// An application token signed by the host's own key, as IAM's would
    /// be, for `user` of `org` with `roles`.
    pub fn app_token(&self, user: &str, org: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.host
            .as_ref()
            .expect("host running")
            .shared()
            .tokens
            .issue(user, org, &roles)
            .unwrap()
            .access_token
    }

    /// An admin's token: alice is listed in the test config, and the
    /// operator creates her account the first time, as `weft iam
    /// create-admin` does.
    pub async fn admin(&self) -> String {
        let password = "correct horse battery";
        if let Ok(token) = self.login("alice", password).await {
            return token;
        }
        let r = self
            .client
            .post(self.url("/admin/components/iam/call/admins"))
            .bearer_auth(self.operator())
            .json(&serde_json::json!({"username": "alice", "email": "alice@example.com", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create-admin alice");
        self.login("alice", password).await.expect("login failed")
    }

    /// GET without a token, as JSON (health endpoints, echo, notes).
    pub async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GET with a bearer token; status and JSON body (Null when empty).
    pub async fn get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// POST JSON with a bearer token; status and JSON body.
    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
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

/// An event as a publisher would send it, for tests that put events on the
/// bus directly (from no outbox: delivered at most once).
pub fn event(
    id: &str,
    event_type: &str,
    data: serde_json::Value,
    correlation_id: &str,
) -> weft_host::bus::Delivery {
    weft_host::bus::Delivery::untracked(std::sync::Arc::new(weft_host::bus::Event {
        id: id.into(),
        event_type: event_type.into(),
        source: "test".into(),
        data,
        timestamp: "2026-11-25T10:00:00Z".into(),
        correlation_id: correlation_id.into(),
        causation_id: None,
        traceparent: None,
    }))
}
