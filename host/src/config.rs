//! `runtime.toml`: the typed, strictly parsed description of a Weft deployment.
//!
//! Unknown keys are errors that name the key and its line (serde's
//! `deny_unknown_fields` plus the `toml` crate's spans). Every path is taken
//! relative to the file's own directory, and a few settings can be overridden
//! from the environment (see [`Config::apply_env`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What can go wrong while reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown or mistyped key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// An environment override has a bad value.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Schema version of this file; only `1` exists.
    pub version: u32,
    /// The HTTP gateway.
    #[serde(default)]
    pub http: HttpConfig,
    /// Where databases and compiled components live.
    #[serde(default)]
    pub data: DataConfig,
    /// Which bus carries events and requests.
    #[serde(default)]
    pub bus: BusConfig,
    /// Default limits for every component (each may override them).
    #[serde(default)]
    pub limits: Limits,
    /// Default retry policy for event handlers (each may override it).
    #[serde(default)]
    pub retry: Retry,
    /// Access tokens: issuer, lifetime, signing keys.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The attempt counters of `weft:service/throttle`.
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// The components, by name.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentConfig>,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Whether to run the gateway at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Listen address; port 0 picks a free port.
    #[serde(default = "default_addr")]
    pub addr: SocketAddr,
    /// Request bodies above this many bytes are refused with 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Open connections at most (WebSockets included); more wait in the
    /// kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections from one client address at most; one more is
    /// answered 429 and closed at once, so one address cannot take every
    /// slot. At most `max_connections`.
    #[serde(default = "default_max_connections_per_client")]
    pub max_connections_per_client: usize,
    /// A request's head (request line and headers) must arrive within this
    /// many milliseconds of the first byte, and a kept-alive connection
    /// that sends no next request within it is closed (hyper starts the
    /// same timer while it waits for the next request).
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// A request's whole body must arrive within this many milliseconds
    /// once its head has, else 408.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// A request head larger than this many bytes gets 431. At least 8192.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Open WebSockets of one user (across the host's endpoints) at most;
    /// one more is refused with 429 before the upgrade.
    #[serde(default = "default_max_websockets_per_user")]
    pub max_websockets_per_user: usize,
    /// The host pings each WebSocket this often (seconds).
    #[serde(default = "default_websocket_ping_secs")]
    pub websocket_ping_secs: u64,
    /// A WebSocket from which nothing (not even a pong) arrives for this
    /// many seconds is closed. More than `websocket_ping_secs`.
    #[serde(default = "default_websocket_idle_secs")]
    pub websocket_idle_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            addr: default_addr(),
            max_body_bytes: default_max_body(),
            max_connections: default_max_connections(),
            max_connections_per_client: default_max_connections_per_client(),
            header_timeout_ms: default_header_timeout_ms(),
            body_timeout_ms: default_body_timeout_ms(),
            max_header_bytes: default_max_header_bytes(),
            max_websockets_per_user: default_max_websockets_per_user(),
            websocket_ping_secs: default_websocket_ping_secs(),
            websocket_idle_secs: default_websocket_idle_secs(),
        }
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let h = self;
        let zero = [
            ("max_connections", h.max_connections as u64),
            (
                "max_connections_per_client",
                h.max_connections_per_client as u64,
            ),
            ("header_timeout_ms", h.header_timeout_ms),
            ("body_timeout_ms", h.body_timeout_ms),
            ("max_websockets_per_user", h.max_websockets_per_user as u64),
            ("websocket_ping_secs", h.websocket_ping_secs),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("http.{key} must be > 0")));
        }
        if h.max_connections_per_client > h.max_connections {
            return Err(ConfigError::Invalid(format!(
                "http.max_connections_per_client = {} is above http.max_connections = {}",
                h.max_connections_per_client, h.max_connections
            )));
        }
        if h.max_header_bytes < MIN_HEADER_BYTES {
            return Err(ConfigError::Invalid(format!(
                "http.max_header_bytes = {}: at least {MIN_HEADER_BYTES}",
                h.max_header_bytes
            )));
        }
        if h.websocket_idle_secs <= h.websocket_ping_secs {
            return Err(ConfigError::Invalid(format!(
                "http.websocket_idle_secs = {} must be more than http.websocket_ping_secs = {}",
                h.websocket_idle_secs, h.websocket_ping_secs
            )));
        }
        Ok(())
    }
}

/// hyper's smallest read buffer: a smaller header cap could not be kept.
pub const MIN_HEADER_BYTES: usize = 8192;

/// `[data]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The data directory: one SQLite file per component, and the cache of
    /// compiled components.
    #[serde(default = "default_data_dir")]
    pub dir: PathBuf,
    /// SQLite's `synchronous` setting for component databases.
    #[serde(default)]
    pub synchronous: Synchronous,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: default_data_dir(),
            synchronous: Synchronous::default(),
        }
    }
}

/// SQLite `synchronous` mode (always with WAL).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Survives a process crash; the last commits may be lost on power loss.
    #[default]
    Normal,
    /// Survives power loss too; every commit waits for fsync.
    Full,
}

/// `[bus]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// `local` (in-process, the default) or `nats`.
    #[serde(default)]
    pub kind: BusKind,
    /// NATS server URL(s), comma-separated, when `kind = "nats"` (default
    /// `nats://127.0.0.1:4222`).
    #[serde(default)]
    pub url: Option<String>,
    /// Capacity of each subscriber's queue: when it is full, events wait
    /// in their publishers' outboxes.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// NATS user name (with `password`).
    #[serde(default)]
    pub user: Option<String>,
    /// NATS password.
    #[serde(default)]
    pub password: Option<String>,
    /// NATS token.
    #[serde(default)]
    pub token: Option<String>,
    /// A NATS credentials file (JWT and NKey seed).
    #[serde(default)]
    pub credentials: Option<PathBuf>,
    /// CA certificate(s) to verify the server with (PEM).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), with `tls_key`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Refuse a connection without TLS.
    #[serde(default)]
    pub tls_required: bool,
    /// The connection name the server shows (default `weft`).
    #[serde(default)]
    pub name: Option<String>,
    /// The JetStream stream of events (over `events.>`); dead letters go to
    /// `<stream>_DLQ` (over `dlq.>`).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// How long the stream keeps events, in seconds (default 7 days).
    #[serde(default = "default_stream_age")]
    pub stream_max_age_secs: u64,
    /// How long the server waits for a delivered event's acknowledgement
    /// before it delivers it again, in seconds (default 60).
    #[serde(default = "default_ack_wait")]
    pub ack_wait_secs: u64,
}

fn default_stream() -> String {
    "WEFT_EVENTS".into()
}

fn default_stream_age() -> u64 {
    7 * 24 * 3600
}

fn default_ack_wait() -> u64 {
    60
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: BusKind::default(),
            url: None,
            queue_capacity: default_queue(),
            user: None,
            password: None,
            token: None,
            credentials: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            name: None,
            stream: default_stream(),
            stream_max_age_secs: default_stream_age(),
            ack_wait_secs: default_ack_wait(),
        }
    }
}

/// Which bus implementation.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// In-process.
    #[default]
    Local,
    /// NATS (core and JetStream).
    Nats,
}

/// Per-invocation limits. In `[limits]` they are defaults; in a component's
/// `[components.<name>.limits]` they override those defaults. Every one has
/// a safe built-in default (see [`Limits::resolve`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory per instance, in MiB (default 64).
    pub memory_mib: Option<u64>,
    /// Wall-clock time per invocation, in milliseconds (default 10000).
    pub timeout_ms: Option<u64>,
    /// Invocations running at once per replica (default 16): HTTP requests
    /// beyond it wait for a slot (then 503), request-reply messages wait in
    /// the bus. Events are delivered one after another per replica.
    pub concurrency: Option<usize>,
    /// Elements per table, e.g. function pointers (default 20000).
    pub table_elements: Option<usize>,
    /// Core instances, tables and memories per store (default 64 each); a
    /// component made of more modules than this is refused when it runs.
    pub instances: Option<usize>,
    /// Largest HTTP request body this component gets, in bytes (default
    /// 1 MiB, never above `[http] max_body_bytes`); larger ones get 413.
    pub max_body_bytes: Option<usize>,
    /// Largest event data, request-reply payload or WebSocket push the
    /// component may send, in bytes (default 1 MiB).
    pub max_payload_bytes: Option<usize>,
    /// How long one host call may wait for the host (the database's writer
    /// lease), in milliseconds (default 5000); never past the invocation's
    /// deadline. Request-reply waits as long as the caller asks, up to the
    /// deadline.
    pub host_call_timeout_ms: Option<u64>,
    /// The largest the component's database may grow, in MiB (default
    /// 1024): past it a write gets `limit-exceeded`.
    pub max_db_mib: Option<u64>,
}

/// Limits with every value decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedLimits {
    /// Linear memory per instance, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock time per invocation.
    pub timeout: std::time::Duration,
    /// Concurrent invocations per replica.
    pub concurrency: usize,
    /// Elements per table.
    pub table_elements: usize,
    /// Core instances (and tables, and memories) per store.
    pub instances: usize,
    /// Largest HTTP request body.
    pub max_body_bytes: usize,
    /// Largest event data, request-reply payload or push.
    pub max_payload_bytes: usize,
    /// Longest wait inside one host call.
    pub host_call_timeout: std::time::Duration,
    /// Largest database file, in bytes.
    pub max_db_bytes: u64,
}

impl Limits {
    /// Fills in from `defaults`, then from built-in defaults.
    pub fn resolve(&self, defaults: &Limits) -> ResolvedLimits {
        let mib = self.memory_mib.or(defaults.memory_mib).unwrap_or(64);
        let ms = self.timeout_ms.or(defaults.timeout_ms).unwrap_or(10_000);
        let concurrency = self.concurrency.or(defaults.concurrency).unwrap_or(16);
        let pick = |own: Option<usize>, default: Option<usize>, builtin: usize| {
            own.or(default).unwrap_or(builtin)
        };
        let host_call_ms = self
            .host_call_timeout_ms
            .or(defaults.host_call_timeout_ms)
            .unwrap_or(5_000);
        ResolvedLimits {
            memory_bytes: usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            timeout: std::time::Duration::from_millis(ms),
            concurrency: concurrency.max(1),
            table_elements: pick(self.table_elements, defaults.table_elements, 20_000),
            instances: pick(self.instances, defaults.instances, 64),
            max_body_bytes: pick(self.max_body_bytes, defaults.max_body_bytes, 1 << 20),
            max_payload_bytes: pick(self.max_payload_bytes, defaults.max_payload_bytes, 1 << 20),
            host_call_timeout: std::time::Duration::from_millis(host_call_ms),
            max_db_bytes: self
                .max_db_mib
                .or(defaults.max_db_mib)
                .unwrap_or(1024)
                .saturating_mul(1 << 20),
        }
    }

    /// Zero where zero makes no sense.
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let zero = [
            ("memory_mib", self.memory_mib.map(|v| v as u128)),
            ("timeout_ms", self.timeout_ms.map(|v| v as u128)),
            ("concurrency", self.concurrency.map(|v| v as u128)),
            ("instances", self.instances.map(|v| v as u128)),
            ("max_body_bytes", self.max_body_bytes.map(|v| v as u128)),
            (
                "max_payload_bytes",
                self.max_payload_bytes.map(|v| v as u128),
            ),
            (
                "host_call_timeout_ms",
                self.host_call_timeout_ms.map(|v| v as u128),
            ),
            ("max_db_mib", self.max_db_mib.map(|v| v as u128)),
        ]
        .into_iter()
        .find(|(_, v)| *v == Some(0));
        match zero {
            Some((key, _)) => Err(ConfigError::Invalid(format!("{at}.{key} must be > 0"))),
            None => Ok(()),
        }
    }
}

/// How failed event deliveries are retried. In `[retry]` these are
/// defaults; in `[components.<name>.retry]` they override them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Deliveries in all, the first included (default 3, as the original's
    /// Bull jobs); after the last failure the event becomes a dead letter.
    pub attempts: Option<u32>,
    /// Delay before the second delivery in ms (default 2000); it doubles for
    /// each further one.
    pub backoff_ms: Option<u64>,
    /// Each delay is moved at random by up to this share of it, in percent
    /// (default 20), so that events that failed together do not all come
    /// back at the same moment.
    pub jitter_percent: Option<u32>,
}

/// A retry policy with every value decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedRetry {
    /// Deliveries in all.
    pub attempts: u32,
    /// Delay before the second delivery.
    pub backoff: std::time::Duration,
    /// Random spread of each delay, in percent of it (0–100).
    pub jitter_percent: u32,
}

impl Retry {
    /// Fills in from `defaults`, then from built-in defaults.
    pub fn resolve(&self, defaults: &Retry) -> ResolvedRetry {
        ResolvedRetry {
            attempts: self.attempts.or(defaults.attempts).unwrap_or(3).max(1),
            backoff: std::time::Duration::from_millis(
                self.backoff_ms.or(defaults.backoff_ms).unwrap_or(2000),
            ),
            jitter_percent: self
                .jitter_percent
                .or(defaults.jitter_percent)
                .unwrap_or(20)
                .min(100),
        }
    }
}

impl ResolvedRetry {
    /// The wait after failed delivery number `attempt` (1-based):
    /// `backoff × 2^(attempt-1)`, moved by up to ± `jitter_percent` of it;
    /// `unit` in [0, 1) picks where (0.5: exactly the middle).
    pub fn delay_after(&self, attempt: u32, unit: f64) -> std::time::Duration {
        let base = self.backoff.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let spread = f64::from(self.jitter_percent) / 100.0 * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64((1.0 + spread).max(0.0))
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` claim of issued tokens, required of every verified token.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// Lifetime of issued access tokens, in seconds.
    #[serde(default = "default_ttl")]
    pub token_ttl_secs: u32,
    /// Folder of Ed25519 signing keys (PKCS#8 PEM); the newest signs, all
    /// verify. Created with a first key when missing. Default:
    /// `<data.dir>/keys`.
    pub keys_dir: Option<PathBuf>,
}

impl AuthConfig {
    /// The keys folder: `keys_dir`, or `<data.dir>/keys`.
    pub fn keys_dir(&self, data_dir: &Path) -> PathBuf {
        self.keys_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("keys"))
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: default_issuer(),
            token_ttl_secs: default_ttl(),
            keys_dir: None,
        }
    }
}

/// `[throttle]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Keys one component's counters hold at most (about 100 bytes each);
    /// when full, expired windows go first, then the one that ends soonest.
    #[serde(default = "default_throttle_keys")]
    pub max_keys: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_keys: default_throttle_keys(),
        }
    }
}

fn default_throttle_keys() -> usize {
    100_000
}

fn default_issuer() -> String {
    "weft".into()
}
fn default_ttl() -> u32 {
    900
}

/// What a component may use beyond its own database. Everything is denied
/// unless granted here; what it receives is granted by `subscribe` and
/// `serve`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Event types it may publish: exact (`user.registered`) or NATS-style
    /// patterns (`user.*`, `user.>`); `*` alone allows every type.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Request-reply subjects it may call (`workflows.create`), patterns
    /// allowed as for `publish`.
    #[serde(default)]
    pub request: Vec<String>,
    /// May ask the host to issue access tokens (`auth.issue-token`).
    #[serde(default)]
    pub issue_tokens: bool,
    /// May push to WebSocket clients (`realtime.push`).
    #[serde(default)]
    pub push: bool,
}

impl Grants {
    /// Whether events of `event_type` may be published.
    pub fn may_publish(&self, event_type: &str) -> bool {
        allowed(&self.publish, event_type)
    }

    /// Whether `subject` may be called by request-reply.
    pub fn may_request(&self, subject: &str) -> bool {
        allowed(&self.request, subject)
    }
}

fn allowed(patterns: &[String], subject: &str) -> bool {
    patterns
        .iter()
        .any(|p| p == "*" || crate::bus::subject::matches(p, subject))
}

/// `[components.<name>]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// Path of the `.wasm` component.
    pub wasm: PathBuf,
    /// The component's bytes, when an embedding program hands them over
    /// instead of a file (see [`ComponentConfig::from_bytes`]); then `wasm`
    /// only names it in messages.
    #[serde(skip)]
    pub wasm_bytes: Option<std::sync::Arc<[u8]>>,
    /// HTTP route prefix (`iam` mounts the component at `/iam/...`); defaults
    /// to the component's name. `""` means no HTTP routes.
    pub route: Option<String>,
    /// Event types to receive: exact (`user.registered`), NATS-style
    /// wildcards (`user.*`, `user.>`), or `*` for every event.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Request-reply subjects this component answers (`workflows.create`).
    #[serde(default)]
    pub serve: Vec<String>,
    /// Instances of this component; each event or request goes to one.
    #[serde(default = "one")]
    pub replicas: usize,
    /// Limits overriding `[limits]`.
    #[serde(default)]
    pub limits: Limits,
    /// Retry policy overriding `[retry]`.
    #[serde(default)]
    pub retry: Retry,
    /// Capabilities granted beyond the defaults.
    #[serde(default)]
    pub grants: Grants,
    /// Timers: name → interval in milliseconds. The host calls the
    /// component's `on-timer(name)` at that interval.
    #[serde(default)]
    pub timers: BTreeMap<String, u64>,
    /// A path below the route prefix (e.g. `/ws`) where the gateway accepts
    /// WebSocket clients with a valid token; they receive this component's
    /// `realtime.push` messages for their user.
    pub websocket: Option<String>,
    /// Values the component reads through the `config` interface.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Reload the component whenever its `.wasm` file changes (for
    /// development; `WEFT_WATCH=1` turns it on for every component).
    #[serde(default)]
    pub watch: bool,
}

impl ComponentConfig {
    /// A component loaded from the `.wasm` file at `path`, with every
    /// setting at its default (route = its name, no subscriptions, one
    /// replica, nothing granted).
    pub fn from_file(path: impl Into<PathBuf>) -> ComponentConfig {
        ComponentConfig {
            wasm: path.into(),
            wasm_bytes: None,
            route: None,
            subscribe: Vec::new(),
            serve: Vec::new(),
            replicas: 1,
            limits: Limits::default(),
            retry: Retry::default(),
            grants: Grants::default(),
            timers: BTreeMap::new(),
            websocket: None,
            config: BTreeMap::new(),
            watch: false,
        }
    }

    /// A component from its `.wasm` bytes (e.g. `include_bytes!`), with
    /// every setting at its default.
    pub fn from_bytes(bytes: impl Into<std::sync::Arc<[u8]>>) -> ComponentConfig {
        ComponentConfig {
            wasm_bytes: Some(bytes.into()),
            ..ComponentConfig::from_file("<bytes>")
        }
    }

    /// Mounts it at `/<prefix>/…`; `""` for no HTTP routes.
    pub fn route(mut self, prefix: &str) -> Self {
        self.route = Some(prefix.to_owned());
        self
    }

    /// Event types it receives (patterns as in `runtime.toml`).
    pub fn subscribe<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.subscribe.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Request-reply subjects it answers.
    pub fn serve<S: Into<String>>(mut self, subjects: impl IntoIterator<Item = S>) -> Self {
        self.serve.extend(subjects.into_iter().map(Into::into));
        self
    }

    /// Event types it may publish (`grants.publish`).
    pub fn publish<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.grants
            .publish
            .extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Subjects it may call by request-reply (`grants.request`).
    pub fn request<S: Into<String>>(mut self, subjects: impl IntoIterator<Item = S>) -> Self {
        self.grants
            .request
            .extend(subjects.into_iter().map(Into::into));
        self
    }

    /// May ask the host to issue access tokens (`grants.issue_tokens`).
    pub fn issue_tokens(mut self) -> Self {
        self.grants.issue_tokens = true;
        self
    }

    /// May push to its WebSocket clients (`grants.push`).
    pub fn push(mut self) -> Self {
        self.grants.push = true;
        self
    }

    /// How many instances run it.
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// A value it reads through the `config` interface.
    pub fn config_value(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.config.insert(key.to_owned(), value.into());
        self
    }

    /// The route prefix, without slashes, or `None` for no HTTP routes.
    pub fn route_prefix<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        let route = self.route.as_deref().unwrap_or(name).trim_matches('/');
        (!route.is_empty()).then_some(route)
    }

    /// The config values as the guest sees them: strings as they are,
    /// anything else as JSON text.
    pub fn config_strings(&self) -> BTreeMap<String, String> {
        self.config
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => serde_json::to_string(other).unwrap_or_default(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn default_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_connections_per_client() -> usize {
    256
}
fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_body_timeout_ms() -> u64 {
    30_000
}
fn default_max_header_bytes() -> usize {
    16 << 10
}
fn default_max_websockets_per_user() -> usize {
    16
}
fn default_websocket_ping_secs() -> u64 {
    30
}
fn default_websocket_idle_secs() -> u64 {
    75
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(".weft")
}
fn default_queue() -> usize {
    4096
}

impl Config {
    /// Reads and checks `path`, resolving relative paths against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("runtime.toml"),
            message: e.to_string(),
        })?;
        if config.version != 1 {
            return Err(ConfigError::Invalid(format!(
                "version = {} is not supported (this host reads version 1)",
                config.version
            )));
        }
        for file in [
            &mut config.bus.credentials,
            &mut config.bus.tls_ca,
            &mut config.bus.tls_cert,
            &mut config.bus.tls_key,
        ]
        .into_iter()
        .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        if config.data.dir.is_relative() {
            config.data.dir = base.join(&config.data.dir);
        }
        for component in config.components.values_mut() {
            if component.wasm.is_relative() {
                component.wasm = base.join(&component.wasm);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// An empty configuration (no components) with every default.
    pub fn empty() -> Config {
        Config {
            version: 1,
            http: HttpConfig::default(),
            data: DataConfig::default(),
            bus: BusConfig::default(),
            limits: Limits::default(),
            retry: Retry::default(),
            auth: AuthConfig::default(),
            throttle: ThrottleConfig::default(),
            components: BTreeMap::new(),
        }
    }

    /// Checks what serde cannot: names, routes, replicas.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut routes = BTreeMap::new();
        for (name, c) in &self.components {
            if !valid_name(name) {
                return Err(ConfigError::Invalid(format!(
                    "component name `{name}`: use 1-64 of a-z, 0-9, `-` and `_`"
                )));
            }
            if c.replicas == 0 || c.replicas > 64 {
                return Err(ConfigError::Invalid(format!(
                    "components.{name}.replicas = {}: must be 1 to 64",
                    c.replicas
                )));
            }
            if let Some(route) = c.route_prefix(name) {
                if route.contains('/') || route == "health" || route == "admin" {
                    return Err(ConfigError::Invalid(format!(
                        "components.{name}.route = `{route}`: one path segment, not `health` or `admin`"
                    )));
                }
                if let Some(other) = routes.insert(route.to_owned(), name.clone()) {
                    return Err(ConfigError::Invalid(format!(
                        "components {other} and {name} both use route `/{route}`"
                    )));
                }
            }
            for pattern in c.subscribe.iter().chain(c.serve.iter()) {
                if crate::bus::subject::event_subject_pattern(pattern).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "components.{name}: `{pattern}` is not a valid subject or pattern"
                    )));
                }
            }
            for pattern in c.grants.publish.iter().chain(c.grants.request.iter()) {
                if pattern != "*" && !crate::bus::subject::is_valid(pattern) {
                    return Err(ConfigError::Invalid(format!(
                        "components.{name}.grants: `{pattern}` is not a valid subject or pattern"
                    )));
                }
            }
            c.limits.validate(&format!("components.{name}.limits"))?;
            for subject in &c.serve {
                if subject.contains('*') || subject.contains('>') {
                    return Err(ConfigError::Invalid(format!(
                        "components.{name}.serve: `{subject}` must be an exact subject"
                    )));
                }
            }
        }
        for (name, c) in &self.components {
            for (timer, ms) in &c.timers {
                if *ms < 10 {
                    return Err(ConfigError::Invalid(format!(
                        "components.{name}.timers.{timer} = {ms}: at least 10 ms"
                    )));
                }
            }
            if let Some(ws) = &c.websocket {
                if !ws.starts_with('/') || ws == "/health" || c.route_prefix(name).is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "components.{name}.websocket = `{ws}`: a path starting with `/` \
                         (not /health) on a component with a route"
                    )));
                }
            }
        }
        self.limits.validate("limits")?;
        if self.auth.token_ttl_secs == 0 {
            return Err(ConfigError::Invalid(
                "auth.token_ttl_secs must be > 0".into(),
            ));
        }
        if self.http.max_body_bytes == 0 {
            return Err(ConfigError::Invalid(
                "http.max_body_bytes must be > 0".into(),
            ));
        }
        self.http.validate()?;
        Ok(())
    }

    /// Keeps only the components named in `list` (comma-separated): this
    /// process runs those, others run elsewhere on the same NATS.
    pub fn only_components(&mut self, list: &str) -> Result<(), ConfigError> {
        let wanted: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if let Some(unknown) = wanted.iter().find(|n| !self.components.contains_key(**n)) {
            return Err(ConfigError::Invalid(format!(
                "component `{unknown}` (in WEFT_COMPONENTS or --components) is not in the configuration; it has: {}",
                self.components.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        if wanted.is_empty() {
            return Err(ConfigError::Invalid(
                "WEFT_COMPONENTS or --components names no component".into(),
            ));
        }
        self.components
            .retain(|name, _| wanted.contains(&name.as_str()));
        Ok(())
    }

    /// Applies `WEFT_*` environment overrides from `vars` (usually
    /// `std::env::vars()`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (key, value) in vars {
            match key.as_str() {
                "WEFT_HTTP_ADDR" => {
                    self.http.addr = value.parse().map_err(|e| ConfigError::Env {
                        name: "WEFT_HTTP_ADDR",
                        message: format!("`{value}` is not an address like 127.0.0.1:8080: {e}"),
                    })?;
                }
                "WEFT_DATA_DIR" => self.data.dir = PathBuf::from(value),
                "WEFT_HTTP_MAX_BODY_BYTES" => {
                    self.http.max_body_bytes = value.parse().map_err(|e| ConfigError::Env {
                        name: "WEFT_HTTP_MAX_BODY_BYTES",
                        message: format!("`{value}`: {e}"),
                    })?;
                }
                "WEFT_WATCH" if value == "1" || value == "true" => {
                    for component in self.components.values_mut() {
                        component.watch = true;
                    }
                }
                "WEFT_NATS_URL" => {
                    self.bus.kind = BusKind::Nats;
                    self.bus.url = Some(value);
                }
                "WEFT_COMPONENTS" => self.only_components(&value)?,
                _ => {}
            }
        }
        self.validate()
    }
}

fn valid_name(name: &str) -> bool {
    // Not starting with `_`: `_host` is the host's own database.
    !name.starts_with('_')
        && !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/base"))
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("version = 1\n[http]\naddr = \"127.0.0.1:1\"\nport = 3\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("port"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn unknown_component_key_is_an_error() {
        let err = parse("version = 1\n[components.a]\nwasm = \"a.wasm\"\nreplica = 2\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("replica"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() -> Result<(), ConfigError> {
        let c = parse("version = 1\n[components.iam]\nwasm = \"x/iam.wasm\"\n")?;
        assert_eq!(c.components["iam"].wasm, Path::new("/base/x/iam.wasm"));
        assert_eq!(c.data.dir, Path::new("/base/.weft"));
        assert_eq!(c.components["iam"].route_prefix("iam"), Some("iam"));
        Ok(())
    }

    #[test]
    fn duplicate_routes_and_zero_replicas_are_refused() {
        let dup = "version = 1\n[components.a]\nwasm = \"a\"\nroute = \"x\"\n[components.b]\nwasm = \"b\"\nroute = \"x\"\n";
        assert!(matches!(parse(dup), Err(ConfigError::Invalid(_))));
        let zero = "version = 1\n[components.a]\nwasm = \"a\"\nreplicas = 0\n";
        assert!(matches!(parse(zero), Err(ConfigError::Invalid(_))));
        assert!(matches!(
            parse("version = 2\n"),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn env_overrides_apply_and_bad_values_are_named() -> Result<(), ConfigError> {
        let mut c = parse("version = 1\n")?;
        c.apply_env([
            ("WEFT_HTTP_ADDR".to_string(), "0.0.0.0:9999".to_string()),
            ("WEFT_DATA_DIR".to_string(), "/tmp/x".to_string()),
        ])?;
        assert_eq!(c.http.addr.port(), 9999);
        assert_eq!(c.data.dir, Path::new("/tmp/x"));
        let err = c.apply_env([("WEFT_HTTP_ADDR".to_string(), "nope".to_string())]);
        assert!(matches!(
            err,
            Err(ConfigError::Env {
                name: "WEFT_HTTP_ADDR",
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn placement_keeps_the_named_components_and_names_unknown_ones() -> Result<(), ConfigError> {
        let text = "version = 1\n[components.iam]\nwasm = \"i\"\n[components.bpm]\nwasm = \"b\"\n[components.lgm]\nwasm = \"l\"\n";
        let mut c = parse(text)?;
        c.apply_env([
            ("WEFT_COMPONENTS".to_string(), "bpm, lgm".to_string()),
            (
                "WEFT_NATS_URL".to_string(),
                "nats://10.0.0.1:4222".to_string(),
            ),
        ])?;
        assert_eq!(c.components.keys().collect::<Vec<_>>(), ["bpm", "lgm"]);
        assert_eq!(c.bus.kind, BusKind::Nats);
        let mut c = parse(text)?;
        let err = c.only_components("iam,nsm").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("`nsm`") && e.contains("bpm, iam, lgm")));
        assert!(c.only_components(" , ").is_err());
        assert_eq!(c.components.len(), 3, "nothing removed after an error");
        Ok(())
    }

    #[test]
    fn config_values_reach_the_guest_as_text() -> Result<(), ConfigError> {
        let c = parse(
            "version = 1\n[components.iam]\nwasm = \"i\"\n[components.iam.config]\nadmins = [\"alice\"]\nname = \"x\"\n",
        )?;
        let values = c.components["iam"].config_strings();
        assert_eq!(values["admins"], "[\"alice\"]");
        assert_eq!(values["name"], "x");
        Ok(())
    }

    #[test]
    fn retry_backoff_doubles_with_jitter_around_it() {
        let ms = std::time::Duration::from_millis;
        let r = Retry {
            attempts: None,
            backoff_ms: Some(100),
            jitter_percent: None,
        }
        .resolve(&Retry::default());
        assert_eq!((r.attempts, r.jitter_percent), (3, 20));
        assert_eq!(r.delay_after(1, 0.5), ms(100));
        assert_eq!(r.delay_after(2, 0.5), ms(200));
        assert_eq!(r.delay_after(3, 0.5), ms(400));
        assert_eq!(r.delay_after(2, 0.0), ms(160));
        assert_eq!(r.delay_after(2, 1.0), ms(240));
        let none = Retry {
            jitter_percent: Some(0),
            ..Retry::default()
        }
        .resolve(&Retry::default());
        assert_eq!(none.delay_after(1, 0.0), ms(2000));
    }

    #[test]
    fn grants_are_denied_unless_given() -> Result<(), ConfigError> {
        let c = parse(
            "version = 1\n[components.a]\nwasm = \"a\"\n[components.b]\nwasm = \"b\"\n[components.b.grants]\npush = true\n",
        )?;
        assert_eq!(c.components["a"].grants, Grants::default());
        assert!(c.components["b"].grants.push && !c.components["b"].grants.issue_tokens);
        let bad =
            parse("version = 1\n[components.a]\nwasm = \"a\"\n[components.a.grants]\nfly = true\n");
        assert!(bad.is_err());
        Ok(())
    }

    #[test]
    fn limits_fall_back_to_defaults() {
        let defaults = Limits {
            memory_mib: Some(32),
            max_payload_bytes: Some(100),
            ..Limits::default()
        };
        let own = Limits {
            timeout_ms: Some(50),
            ..Limits::default()
        };
        let r = own.resolve(&defaults);
        assert_eq!(r.memory_bytes, 32 << 20);
        assert_eq!(r.timeout, std::time::Duration::from_millis(50));
        assert_eq!(r.concurrency, 16);
        assert_eq!(r.max_payload_bytes, 100);
        assert_eq!(r.max_body_bytes, 1 << 20);
        assert_eq!(r.instances, 64);
        assert_eq!(r.host_call_timeout, std::time::Duration::from_secs(5));
    }

    #[test]
    fn zero_limits_are_refused_by_name() {
        let err = parse("version = 1\n[components.a]\nwasm = \"a\"\n[components.a.limits]\nmax_payload_bytes = 0\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("components.a.limits.max_payload_bytes"),
            "{err}"
        );
        assert!(parse("version = 1\n[limits]\ntimeout_ms = 0\n").is_err());
    }

    #[test]
    fn publish_and_request_grants_match_patterns() -> Result<(), ConfigError> {
        let c = parse(
            "version = 1\n[components.a]\nwasm = \"a\"\n[components.a.grants]\npublish = [\"user.*\", \"account.created\"]\nrequest = [\"workflows.>\"]\n[components.b]\nwasm = \"b\"\n[components.b.grants]\npublish = [\"*\"]\n",
        )?;
        let a = &c.components["a"].grants;
        assert!(a.may_publish("user.registered"));
        assert!(a.may_publish("account.created"));
        assert!(!a.may_publish("account.closed"));
        assert!(!a.may_publish("user.registered.extra"));
        assert!(a.may_request("workflows.create"));
        assert!(!a.may_request("buildings.create"));
        assert!(c.components["b"].grants.may_publish("anything.at.all"));
        assert!(!c.components["b"].grants.may_request("workflows.create"));
        let bad = parse("version = 1\n[components.a]\nwasm = \"a\"\n[components.a.grants]\npublish = [\"a..b\"]\n");
        assert!(matches!(bad, Err(ConfigError::Invalid(_))));
        Ok(())
    }
}
