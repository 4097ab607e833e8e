//! A test harness for component authors: one component, from its built
//! `.wasm`, in a host of its own with a temporary database, a bus that
//! captures what it publishes and answers its requests from stubs, a fake
//! clock and seeded randomness. No broker, no socket, no other component.
//!
//! ```no_run
//! use serde_json::json;
//! use weft_host::testing::ComponentTest;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let t = ComponentTest::from_file("bpm", "components/target/wasm32-wasip2/release/bpm.wasm")
//!     .start()
//!     .await?;
//! // An event in, a row and an event out.
//! t.event("user.registered", json!({"userId": "u1", "orgId": "o1"})).await?;
//! let published = t.published();
//! assert_eq!(published[0].event_type, "account.created");
//! let rows = t.rows("SELECT count(*) AS n FROM accounts").await?;
//! // An HTTP request with a caller.
//! let token = t.token("u1", "o1", &["user"]);
//! let (status, body) = t.get_json("/accounts", Some(&token)).await;
//! assert_eq!(status, 200);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, FutureExt};
use serde_json::Value;

use crate::bus::{Bus, BusError, Delivery, Event, EventReceiver, RequestReceiver};
use crate::component::LoadedComponent;
use crate::config::{ComponentConfig, Config};
use crate::db::{DbError, Rows};
use crate::fakes::{FakeClock, Fakes};
use crate::http::{Bytes, Request, StatusCode};
use crate::runtime::{Host, StartError, StartOptions};

type Stub = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// The bus of a component test: keeps every event the component publishes
/// (delivering none), and answers its requests from stubs.
#[derive(Default)]
pub struct CaptureBus {
    published: Mutex<Vec<Arc<Event>>>,
    stubs: HashMap<String, Stub>,
    // Kept so that the host's workers wait on queues nobody feeds.
    idle: Mutex<Vec<Box<dyn std::any::Any + Send>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl CaptureBus {
    /// A queue nobody feeds (kept open so that the host's workers wait).
    fn idle_queue(&self) -> EventReceiver {
        let (tx, rx) = async_channel::bounded(1);
        lock(&self.idle).push(Box::new(tx));
        rx
    }
}

impl Bus for CaptureBus {
    fn kind(&self) -> &'static str {
        "capture"
    }

    fn connected(&self) -> bool {
        true
    }

    fn publish(&self, events: Vec<Delivery>) -> BoxFuture<'_, Result<(), BusError>> {
        let mut published = lock(&self.published);
        for delivery in events {
            // Captured is delivered: nothing waits in the outbox.
            if let Some(receipt) = &delivery.receipt {
                receipt.expect(0);
            }
            published.push(delivery.event);
        }
        async { Ok(()) }.boxed()
    }

    fn subscribe<'a>(
        &'a self,
        _group: &'a str,
        _patterns: &'a [String],
    ) -> BoxFuture<'a, Result<EventReceiver, BusError>> {
        async move { Ok(self.idle_queue()) }.boxed()
    }

    fn observe<'a>(
        &'a self,
        _patterns: &'a [String],
    ) -> BoxFuture<'a, Result<EventReceiver, BusError>> {
        async move { Ok(self.idle_queue()) }.boxed()
    }

    fn serve<'a>(
        &'a self,
        _group: &'a str,
        _subjects: &'a [String],
    ) -> BoxFuture<'a, Result<RequestReceiver, BusError>> {
        async move {
            let (tx, rx) = async_channel::bounded(1);
            lock(&self.idle).push(Box::new(tx));
            Ok(rx)
        }
        .boxed()
    }

    fn request(
        &self,
        subject: &str,
        payload: String,
        _correlation_id: String,
        _traceparent: Option<String>,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<String, BusError>> {
        let answer = match self.stubs.get(subject) {
            None => Err(BusError::NoResponder(subject.to_owned())),
            Some(stub) => stub(&payload).map_err(BusError::Remote),
        };
        async move { answer }.boxed()
    }

    fn close(&self) {
        lock(&self.idle).clear();
    }
}

/// Sets up a [`ComponentTest`].
pub struct ComponentTestBuilder {
    name: String,
    component: ComponentConfig,
    stubs: HashMap<String, Stub>,
    clock: SystemTime,
    seed: u64,
}

/// Where the fake clock starts unless told: 2026-01-01T00:00:00Z.
pub const DEFAULT_START: Duration = Duration::from_secs(1_767_225_600);

impl ComponentTestBuilder {
    fn new(name: &str, component: ComponentConfig) -> ComponentTestBuilder {
        // Grants are deployment policy; a unit test lets the component do
        // everything and asserts on what it did.
        let mut component = component.route(name).issue_tokens().push();
        component.grants.publish = vec!["*".into()];
        component.grants.request = vec!["*".into()];
        ComponentTestBuilder {
            name: name.to_owned(),
            component,
            stubs: HashMap::new(),
            clock: UNIX_EPOCH + DEFAULT_START,
            seed: 0,
        }
    }

    /// Adjusts the component's settings (config values, limits, grants).
    pub fn with(mut self, adjust: impl FnOnce(ComponentConfig) -> ComponentConfig) -> Self {
        self.component = adjust(self.component);
        self
    }

    /// Answers the component's requests on `subject` with `reply(payload)`:
    /// `Ok(text)` is the reply, `Err(message)` reaches it as `remote`.
    /// Subjects without a stub answer `no-responder`.
    pub fn stub(
        mut self,
        subject: &str,
        reply: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        self.stubs.insert(subject.to_owned(), Arc::new(reply));
        self
    }

    /// Starts the fake clock at `at` (default [`DEFAULT_START`]).
    pub fn clock(mut self, at: SystemTime) -> Self {
        self.clock = at;
        self
    }

    /// Seeds the component's randomness (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Loads the component and runs its migrations on a fresh database.
    pub async fn start(self) -> Result<ComponentTest, StartError> {
        let dir = TempDir::new()?;
        let mut config = Config::empty();
        config.http.enabled = false;
        config.data.dir = dir.0.clone();
        config.retry.attempts = Some(1);
        config.components.insert(self.name.clone(), self.component);
        config.validate()?;
        let bus = Arc::new(CaptureBus {
            stubs: self.stubs,
            ..CaptureBus::default()
        });
        let fakes = Arc::new(Fakes::new(FakeClock::at(self.clock), self.seed));
        let host = Host::start_with(
            config,
            StartOptions {
                bus: Some(bus.clone()),
                fakes: Some(fakes.clone()),
                ..StartOptions::default()
            },
        )
        .await?;
        Ok(ComponentTest {
            host: Some(host),
            bus,
            name: self.name,
            fakes,
            next_event: AtomicU64::new(0),
            client: Mutex::new(None),
            _dir: dir,
        })
    }
}

/// One component under test. See the module docs.
pub struct ComponentTest {
    host: Option<Host>,
    bus: Arc<CaptureBus>,
    name: String,
    fakes: Arc<Fakes>,
    next_event: AtomicU64,
    client: Mutex<Option<std::net::IpAddr>>,
    _dir: TempDir,
}

impl ComponentTest {
    /// A test of the component in the `.wasm` file at `path`, named `name`
    /// (its route prefix, and the `source` of its events).
    pub fn from_file(name: &str, path: impl Into<PathBuf>) -> ComponentTestBuilder {
        ComponentTestBuilder::new(name, ComponentConfig::from_file(path))
    }

    /// A test of the component in `bytes`.
    pub fn from_bytes(name: &str, bytes: impl Into<Arc<[u8]>>) -> ComponentTestBuilder {
        ComponentTestBuilder::new(name, ComponentConfig::from_bytes(bytes))
    }

    fn host(&self) -> &Host {
        match &self.host {
            Some(host) => host,
            None => unreachable!("the host lives until the test is dropped"),
        }
    }

    fn component(&self) -> &Arc<LoadedComponent> {
        match self.host().shared().components.get(&self.name) {
            Some(c) => c,
            None => unreachable!("the component under test is loaded"),
        }
    }

    /// Sends an HTTP request; `path` is below the component's prefix
    /// (`/accounts`, not `/bpm/accounts`).
    pub async fn call(&self, request: Request<Bytes>) -> crate::http::Response<Bytes> {
        let (mut parts, body) = request.into_parts();
        if let Some(addr) = *lock(&self.client) {
            parts.extensions.insert(crate::gateway::ClientAddr(addr));
        }
        let path = format!("/{}{}", self.name, parts.uri);
        parts.uri = match path.parse() {
            Ok(uri) => uri,
            Err(_) => parts.uri,
        };
        let response = self.host().call(Request::from_parts(parts, body)).await;
        self.relayed().await;
        response
    }

    /// Waits until the component's outbox handed everything committed so
    /// far to the capturing bus, so that `published` sees it.
    async fn relayed(&self) {
        self.component().ctx.outbox.sent().await;
    }

    /// Sends the requests that follow as from the client at `addr`
    /// (`throttle.client-address`); `None`, the default, as from no socket.
    pub fn set_client_address(&self, addr: Option<std::net::IpAddr>) {
        *lock(&self.client) = addr;
    }

    /// GET `path` (with a bearer `token`): status and JSON body (`Null`
    /// when the body is not JSON).
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send_json("GET", path, token, None).await
    }

    /// `method` `path` with a JSON `body` (and a bearer `token`): status
    /// and JSON body.
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = match request.body(body) {
            Ok(r) => r,
            Err(e) => return (StatusCode::BAD_REQUEST, Value::String(e.to_string())),
        };
        let response = self.call(request).await;
        let status = response.status();
        (
            status,
            serde_json::from_slice(response.body()).unwrap_or(Value::Null),
        )
    }

    /// `method` `path` with a JSON `body`, called as the host's operator
    /// (caller role `weft:operator`), as `weft` does through
    /// `/admin/components/<name>/call/<path>`: status and JSON body.
    pub async fn operator_send_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = match request.body(http_body_util::Full::new(body)) {
            Ok(r) => r,
            Err(e) => return (StatusCode::BAD_REQUEST, Value::String(e.to_string())),
        };
        let target = (self.name.clone(), path.to_owned());
        let response = crate::admin::operator_call(self.host().shared(), request, target).await;
        self.relayed().await;
        let status = response.status();
        let body = match http_body_util::BodyExt::collect(response.into_body()).await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// A valid access token for a caller, signed by the test host.
    pub fn token(&self, user_id: &str, org_id: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        match self.host().shared().tokens.issue(user_id, org_id, &roles) {
            Ok(t) => t.access_token,
            Err(e) => panic!("the test host cannot sign tokens: {e}"),
        }
    }

    /// Delivers one event of `event_type` with `data` (id `test-event-N`,
    /// correlation id `test`), once, without retries. `Err` says why the
    /// handler failed; its writes and events are then rolled back.
    pub async fn event(&self, event_type: &str, data: Value) -> Result<(), String> {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed) + 1;
        let event = Event {
            id: format!("test-event-{n}"),
            event_type: event_type.to_owned(),
            source: "test".into(),
            data,
            timestamp: self.fakes.clock.rfc3339(),
            correlation_id: "test".into(),
            causation_id: None,
            traceparent: None,
        };
        self.deliver(event).await
    }

    /// Delivers `event` as it is (to test deduplication by id, say).
    pub async fn deliver(&self, event: Event) -> Result<(), String> {
        let component = self.component();
        let instance = component.next_instance();
        let failed = component
            .handle_events(&instance, &[Delivery::untracked(Arc::new(event))])
            .await
            .pop();
        self.relayed().await;
        match failed {
            None => Ok(()),
            Some((_, why)) => Err(why),
        }
    }

    /// Sends a request-reply message on `subject`; the component's answer.
    pub async fn message(&self, subject: &str, payload: &str) -> Result<String, String> {
        let component = self.component();
        let answer = component
            .handle_message(
                component.next_instance(),
                subject.to_owned(),
                payload.to_owned(),
                "test".into(),
                None,
            )
            .await
            .map_err(|e| e.to_string());
        self.relayed().await;
        answer
    }

    /// Runs one tick of timer `name`.
    pub async fn tick(&self, name: &str) -> Result<(), String> {
        let done = self
            .component()
            .handle_timer(name)
            .await
            .map_err(|e| e.to_string());
        self.relayed().await;
        done
    }

    /// Every event the component has published so far, in order.
    pub fn published(&self) -> Vec<Event> {
        lock(&self.bus.published)
            .iter()
            .map(|e| (**e).clone())
            .collect()
    }

    /// The events published so far, forgetting them.
    pub fn take_published(&self) -> Vec<Event> {
        std::mem::take(&mut *lock(&self.bus.published))
            .into_iter()
            .map(|e| (*e).clone())
            .collect()
    }

    /// Runs `sql` on the component's database, on the host's behalf.
    pub async fn rows(&self, sql: &str) -> Result<Rows, DbError> {
        self.component().ctx.db.host_query(sql).await
    }

    /// Moves the fake clock forward.
    pub fn advance(&self, by: Duration) {
        self.fakes.clock.advance(by);
    }

    /// The fake clock's time, RFC 3339.
    pub fn now_rfc3339(&self) -> String {
        self.fakes.clock.rfc3339()
    }
}

impl ComponentTest {
    /// Stops the host in order (as [`Host::shutdown`]). Dropping the test
    /// also ends it, less politely.
    pub async fn stop(mut self) {
        if let Some(host) = self.host.take() {
            host.shutdown().await;
        }
    }
}

impl Drop for ComponentTest {
    fn drop(&mut self) {
        // Closing the bus ends the workers waiting on its queues, which
        // lets go of the host and the database.
        self.bus.close();
        drop(self.host.take());
    }
}

/// A data directory of its own, removed afterwards.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, StartError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "weft-test-{}-{n}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| StartError::Setup(format!("cannot create {}: {e}", path.display())))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
