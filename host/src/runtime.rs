//! Starting and stopping a host: engine, bus, components, replica workers,
//! the HTTP gateway, and an orderly shutdown.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use wasmtime::Engine;

use crate::auth::TokenService;
use crate::bus::local::LocalBus;
use crate::bus::{Bus, Delivery, Event, EventReceiver, RequestReceiver};
use crate::component::LoadedComponent;
use crate::config::{BusKind, Config};
use crate::db::{Database, GuestBounds};
use crate::engine::{self, EpochTicker, LoadError};
use crate::gateway;
use crate::hub::Hub;
use crate::loader::Loader;
use crate::outbox::Outbox;
use crate::state::ComponentCtx;

/// How long shutdown waits for in-flight HTTP requests and queued events.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The host's own database (the outbox of [`Host::publish`]) in
/// `<data.dir>/db/`; no component can have this name.
pub const HOST_DB_NAME: &str = "_host.sqlite";
/// Events an embedding program's subscription holds before it waits.
const SUBSCRIBE_QUEUE: usize = 1024;

/// Failures while starting a host.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration does not make sense (from [`crate::HostBuilder`]).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The configuration asks for something this host cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// A component could not be loaded.
    #[error("component `{name}`: {source}")]
    Load {
        /// The component.
        name: String,
        /// Why.
        source: LoadError,
    },
    /// A component does not fit the `weft:service/service` world.
    #[error("component `{name}` does not fit the weft:service world: {message}")]
    World {
        /// The component.
        name: String,
        /// wasmtime's explanation (a missing export, an unknown import).
        message: String,
    },
    /// A component imports a capability that its grants never allow.
    #[error("component `{name}` imports {import}, but {why}")]
    NotGranted {
        /// The component.
        name: String,
        /// The WIT interface it imports.
        import: String,
        /// Which grant is missing.
        why: String,
    },
    /// A component's database could not be opened or migrated.
    #[error("component `{name}`: database: {message}")]
    Database {
        /// The component.
        name: String,
        /// Why.
        message: String,
    },
    /// The HTTP listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The bus could not be set up (NATS unreachable, a stream that does
    /// not fit).
    #[error("bus: {0}")]
    Bus(String),
    /// Something else in the host's setup.
    #[error("{0}")]
    Setup(String),
}

/// What [`Host::start`] takes beyond the configuration, for benchmarks and
/// component tests.
#[derive(Default)]
pub(crate) struct StartOptions {
    /// The guards (all on, outside benchmarks).
    pub sandbox: engine::Sandbox,
    /// A bus of the caller's (the capturing bus of component tests).
    pub bus: Option<Arc<dyn Bus>>,
    /// A fake clock and seeded randomness.
    pub fakes: Option<Arc<crate::fakes::Fakes>>,
}

/// Failures of [`Host::publish`].
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The event type or data is not acceptable.
    #[error("invalid event: {0}")]
    Invalid(#[from] crate::bus::envelope::EnvelopeError),
    /// The bus refused it (it is shutting down).
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    /// It could not be stored in the host's outbox.
    #[error("cannot store the event: {0}")]
    Store(crate::db::DbError),
}

/// What the gateway and the workers share.
pub struct Shared {
    /// Components by name.
    pub components: BTreeMap<String, Arc<LoadedComponent>>,
    /// Components by route prefix.
    pub routes: HashMap<String, Arc<LoadedComponent>>,
    /// Components by the full path of their WebSocket endpoint.
    pub websockets: HashMap<String, Arc<LoadedComponent>>,
    /// Verifies bearer tokens at the gateway.
    pub tokens: Arc<TokenService>,
    /// Verifies the operator's tokens at the admin API.
    pub operator: crate::operator::OperatorKey,
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
    /// The caps and timers of WebSockets.
    pub websockets_limits: crate::websocket::Limits,
    /// Event and message invocations running now.
    pub busy: AtomicUsize,
    /// Compiles and links new versions of components (reloads).
    pub loader: Loader,
}

/// A running host. Drop it, or better call [`Host::shutdown`].
pub struct Host {
    shared: Arc<Shared>,
    http_addr: Option<SocketAddr>,
    stop_http: watch::Sender<bool>,
    stop_timers: watch::Sender<bool>,
    timer_tasks: JoinSet<()>,
    http_task: Option<tokio::task::JoinHandle<()>>,
    workers: JoinSet<()>,
    queues: Vec<EventReceiver>,
    request_queues: Vec<RequestReceiver>,
    host_db: Database,
    host_outbox: Arc<Outbox>,
    stop_relays: watch::Sender<bool>,
    relays: JoinSet<()>,
    _ticker: Option<EpochTicker>,
    _engine: Engine,
}

impl Host {
    /// Loads every component of `config` and starts serving.
    pub async fn start(config: Config) -> Result<Host, StartError> {
        Host::start_with_sandbox(config, engine::Sandbox::default()).await
    }

    /// [`Host::start`] with some of the sandbox's guards off: for
    /// benchmarks that measure what the guards cost, never for serving.
    #[doc(hidden)]
    pub async fn start_with_sandbox(
        config: Config,
        sandbox: engine::Sandbox,
    ) -> Result<Host, StartError> {
        Host::start_with(
            config,
            StartOptions {
                sandbox,
                ..StartOptions::default()
            },
        )
        .await
    }

    /// Starts with what only benchmarks and component tests change.
    pub(crate) async fn start_with(
        config: Config,
        options: StartOptions,
    ) -> Result<Host, StartError> {
        let StartOptions {
            sandbox,
            bus,
            fakes,
        } = options;
        let started = Instant::now();
        crate::private::create_dir(&config.data.dir).map_err(|e| {
            StartError::Setup(format!("data directory {}: {e}", config.data.dir.display()))
        })?;
        let engine = engine::build_engine(sandbox).map_err(|e| StartError::Setup(e.to_string()))?;
        let ticker = sandbox
            .epoch_interruption
            .then(|| EpochTicker::start(&engine));
        let bus: Arc<dyn Bus> = match (bus, config.bus.kind) {
            (Some(bus), _) => bus,
            (None, BusKind::Local) => Arc::new(LocalBus::new(config.bus.queue_capacity)),
            (None, BusKind::Nats) => Arc::new(
                crate::bus::nats::NatsBus::connect(&config.bus)
                    .await
                    .map_err(|e| StartError::Bus(e.to_string()))?,
            ),
        };
        let tokens = Arc::new(
            TokenService::load(&config.auth, &config.data.dir)
                .map_err(|e| StartError::Setup(e.to_string()))?,
        );
        let operator = crate::operator::OperatorKey::load_or_create(
            &config.auth.keys_dir(&config.data.dir),
            &config.auth.issuer,
        )
        .map_err(|e| StartError::Setup(e.to_string()))?;
        let loader = Loader::new(engine.clone(), config.data.dir.join("cache"))?;

        let mut components = BTreeMap::new();
        let mut routes = HashMap::new();
        let mut websockets = HashMap::new();
        let mut timers = Vec::new();
        let mut subscriptions = Vec::new();
        let mut held = Vec::new();
        for (name, cc) in &config.components {
            let t = Instant::now();
            let prepared = loader.prepare_configured(name, cc)?;
            let sha256 = prepared.version.sha256.clone();
            let db_err = |message: String| StartError::Database {
                name: name.clone(),
                message,
            };
            let db_path = config.data.dir.join("db").join(format!("{name}.sqlite"));
            let db = Database::open(&db_path, config.data.synchronous)
                .map_err(|e| db_err(e.to_string()))?;
            let limits = cc.limits.resolve(&config.limits);
            db.bound(GuestBounds::for_limits(&limits))
                .map_err(|e| db_err(e.to_string()))?;
            let outbox = Outbox::open(name, db.clone()).map_err(|e| db_err(e.to_string()))?;
            let now = crate::auth::now_secs();
            let revoked = db
                .host_write(|sql| crate::revocations::load(sql, now))
                .await
                .map_err(|e| db_err(format!("cannot read its revocations: {e}")))?;
            tokens.revocations().apply(&revoked, now);
            held.extend(revoked);
            let ctx = Arc::new(ComponentCtx {
                name: name.clone(),
                config: cc.config_strings(),
                db: db.clone(),
                outbox,
                bus: bus.clone(),
                grants: cc.grants.clone(),
                limits,
                sandbox,
                fakes: fakes.clone(),
                wasm: cc.wasm.clone(),
                tokens: tokens.clone(),
                hub: Arc::new(Hub::default()),
                throttle: Arc::new(crate::throttle::Throttle::new(config.throttle.max_keys)),
            });
            let component = Arc::new(LoadedComponent::new(
                ctx,
                prepared.version,
                cc.retry.resolve(&config.retry),
                cc.replicas,
            ));
            let migrations = component
                .migrations(component.current())
                .await
                .map_err(|e| db_err(format!("cannot list migrations: {e}")))?;
            let applied = db
                .migrate(migrations, limits.timeout)
                .await
                .map_err(|e| db_err(e.to_string()))?;
            tracing::info!(
                component = %name,
                version = %&sha256[..12],
                cached = prepared.cached,
                migrations_applied = applied,
                replicas = cc.replicas,
                "loaded in {:.1} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
            let events = if cc.subscribe.is_empty() {
                None
            } else {
                Some(bus.subscribe(name, &cc.subscribe).await.map_err(|e| {
                    StartError::Setup(format!("component `{name}`: subscribe: {e}"))
                })?)
            };
            // One serving queue per replica: the bus hands each request to
            // exactly one of them, in turn, so requests spread evenly instead
            // of going to whichever replica happens to poll first.
            let mut requests = Vec::new();
            if !cc.serve.is_empty() {
                for _ in &component.instances {
                    requests.push(bus.serve(name, &cc.serve).await.map_err(|e| {
                        StartError::Setup(format!("component `{name}`: serve: {e}"))
                    })?);
                }
            }
            if let Some(events) = &events {
                let _ = component.events.set(events.clone());
            }
            subscriptions.push((component.clone(), events, requests));
            for (timer, ms) in &cc.timers {
                timers.push((component.clone(), timer.clone(), Duration::from_millis(*ms)));
            }
            if let Some(route) = cc.route_prefix(name) {
                routes.insert(route.to_owned(), component.clone());
                if let Some(ws) = &cc.websocket {
                    websockets.insert(format!("/{route}{ws}"), component.clone());
                }
            }
            components.insert(name.clone(), component);
        }

        // The other hosts' revocations are in force before the gateway
        // listens, and this host's reach them even if it stopped between a
        // commit and sharing it.
        let window = Duration::from_secs(u64::from(tokens.ttl_secs()) + 60);
        let feed = match bus.follow_revocations(window).await {
            Ok(Some((replayed, feed))) => {
                tokens
                    .revocations()
                    .apply(&replayed, crate::auth::now_secs());
                Some(feed)
            }
            Ok(None) => None,
            Err(e) => return Err(StartError::Bus(e.to_string())),
        };
        if feed.is_some() && !held.is_empty() {
            if let Err(e) = bus.share_revocations(&held).await {
                return Err(StartError::Bus(e.to_string()));
            }
        }

        let shared = Arc::new(Shared {
            components,
            routes,
            websockets,
            bus,
            tokens,
            operator,
            max_body_bytes: config.http.max_body_bytes,
            body_timeout: Duration::from_millis(config.http.body_timeout_ms),
            websockets_limits: crate::websocket::Limits::of(&config.http),
            busy: AtomicUsize::new(0),
            loader,
        });

        // The embedding program's own events (`Host::publish`) go through an
        // outbox too, in a database of the host's.
        let host_db = Database::open(
            &config.data.dir.join("db").join(HOST_DB_NAME),
            config.data.synchronous,
        )
        .map_err(|e| StartError::Setup(format!("the host's database: {e}")))?;
        let host_outbox = Outbox::open("host", host_db.clone())
            .map_err(|e| StartError::Setup(format!("the host's outbox: {e}")))?;

        let mut workers = JoinSet::new();
        let mut queues = Vec::new();
        let mut request_queues = Vec::new();
        for (component, events, requests) in subscriptions {
            queues.extend(events.clone());
            request_queues.extend(requests.iter().cloned());
            for (n, instance) in component.instances.clone().into_iter().enumerate() {
                if let Some(events) = &events {
                    let (s, c, i) = (shared.clone(), component.clone(), instance.clone());
                    workers.spawn(event_loop(s, c, i, events.clone()));
                }
                if let Some(requests) = requests.get(n) {
                    let (s, c, i) = (shared.clone(), component.clone(), instance.clone());
                    workers.spawn(request_loop(s, c, i, requests.clone()));
                }
            }
        }

        // Relays start once every subscription exists: what they deliver
        // from an earlier run must find its subscribers.
        let (stop_relays, stop_relays_rx) = watch::channel(false);
        let mut relays = JoinSet::new();
        for outbox in shared
            .components
            .values()
            .map(|c| c.ctx.outbox.clone())
            .chain([host_outbox.clone()])
        {
            relays.spawn(outbox.relay(shared.bus.clone(), stop_relays_rx.clone()));
        }

        let (stop_timers, stop_timers_rx) = watch::channel(false);
        let mut timer_tasks = JoinSet::new();
        for (name, cc) in &config.components {
            if cc.watch {
                timer_tasks.spawn(crate::reload::watch_file(
                    shared.clone(),
                    name.clone(),
                    stop_timers_rx.clone(),
                ));
            }
        }
        if let Some(feed) = feed {
            timer_tasks.spawn(follow_revocations(
                feed,
                shared.tokens.clone(),
                stop_timers_rx.clone(),
            ));
        }
        for (component, timer, every) in timers {
            timer_tasks.spawn(timer_loop(
                shared.clone(),
                component,
                timer,
                every,
                stop_timers_rx.clone(),
            ));
        }

        let (stop_http, stop_rx) = watch::channel(false);
        let (http_addr, http_task) = if config.http.enabled {
            let listener = tokio::net::TcpListener::bind(config.http.addr)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.http.addr,
                    source,
                })?;
            let addr = listener
                .local_addr()
                .map_err(|e| StartError::Setup(format!("listener address: {e}")))?;
            let task = tokio::spawn(gateway::serve(
                listener,
                shared.clone(),
                config.http.clone(),
                stop_rx,
            ));
            (Some(addr), Some(task))
        } else {
            (None, None)
        };
        tracing::info!(
            components = shared.components.len(),
            http = ?http_addr,
            "weft started in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok(Host {
            shared,
            http_addr,
            stop_http,
            http_task,
            stop_timers,
            timer_tasks,
            workers,
            queues,
            request_queues,
            host_db,
            host_outbox,
            stop_relays,
            relays,
            _ticker: ticker,
            _engine: engine,
        })
    }

    /// The gateway's bound address, when HTTP is enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// What the gateway and workers share (components, bus).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Publishes an event as the embedding program (`source` = `host`): it
    /// reaches every component that subscribed to its type, like an event a
    /// component published. Returns the event's id.
    pub async fn publish(
        &self,
        event_type: &str,
        data: serde_json::Value,
    ) -> Result<String, PublishError> {
        let event = Event {
            id: crate::bus::new_event_id(),
            event_type: event_type.to_owned(),
            source: "host".into(),
            data,
            timestamp: crate::time::now_rfc3339(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
            causation_id: None,
            traceparent: None,
        };
        crate::bus::envelope::check(&event)?;
        let id = event.id.clone();
        let tx = self.host_db.begin().await.map_err(PublishError::Store)?;
        let committed = crate::outbox::append(&tx, vec![event]).map_err(PublishError::Store)?;
        tx.commit().await.map_err(PublishError::Store)?;
        self.host_outbox.committed(committed);
        Ok(id)
    }

    /// Calls `subject` by request-reply, as a component would, and waits up
    /// to `timeout` for the answer.
    pub async fn request(
        &self,
        subject: &str,
        payload: &str,
        timeout: Duration,
    ) -> Result<String, crate::bus::BusError> {
        let correlation = uuid::Uuid::new_v4().to_string();
        self.shared
            .bus
            .request(subject, payload.to_owned(), correlation, None, timeout)
            .await
    }

    /// Sends an HTTP request to a component inside the process, without a
    /// socket (the gateway need not listen): `/iam/register` reaches the
    /// component mounted at `iam`, with the same token guard, body cap and
    /// error bodies as over HTTP.
    pub async fn call(
        &self,
        request: hyper::Request<bytes::Bytes>,
    ) -> hyper::Response<bytes::Bytes> {
        use http_body_util::BodyExt;
        let request = request.map(http_body_util::Full::new);
        let response = gateway::handle_in_process(&self.shared, request).await;
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        hyper::Response::from_parts(parts, body)
    }

    /// Receives, from now on, every event whose type matches `patterns`
    /// (as `subscribe` in `runtime.toml`), at most once: an event counts as
    /// delivered once it is in the returned queue. Keep reading it: while
    /// it is full, events wait in their publishers' outboxes. Dropping it
    /// unsubscribes.
    pub async fn subscribe(
        &self,
        patterns: &[&str],
    ) -> Result<async_channel::Receiver<Arc<Event>>, crate::bus::BusError> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        let deliveries = self.shared.bus.observe(&patterns).await?;
        let (tx, rx) = async_channel::bounded(SUBSCRIBE_QUEUE);
        tokio::spawn(async move {
            while let Ok(delivery) = deliveries.recv().await {
                let sent = tx.send(delivery.event.clone()).await;
                delivery.settle();
                if sent.is_err() {
                    break; // dropped: unsubscribed
                }
            }
        });
        Ok(rx)
    }

    /// Swaps component `name` to the `.wasm` `bytes` (or, with `None`, to
    /// its configured file read again) while it runs; see
    /// [`crate::reload`]. On error the old version goes on serving.
    pub async fn reload(
        &self,
        name: &str,
        bytes: Option<Vec<u8>>,
    ) -> Result<crate::reload::Swapped, crate::reload::ReloadError> {
        crate::reload::reload(&self.shared, name, bytes).await
    }

    /// Returns component `name` to the version it ran before the last
    /// swap.
    pub async fn rollback(
        &self,
        name: &str,
    ) -> Result<crate::reload::Swapped, crate::reload::ReloadError> {
        crate::reload::rollback(&self.shared, name).await
    }

    /// Stops taking work, lets in-flight requests and queued events finish
    /// (up to [`DRAIN_TIMEOUT`] each), then flushes every database.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down: no new connections");
        let _ = self.stop_http.send(true);
        if let Some(task) = self.http_task.take() {
            let _ = task.await;
        }
        let _ = self.stop_timers.send(true);
        while self.timer_tasks.join_next().await.is_some() {}
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, self.wait_idle()).await;
        if drained.is_err() {
            let left: usize = self.queues.iter().map(|q| q.len()).sum();
            tracing::warn!(
                left,
                "shutdown: gave up waiting for queued events; their outboxes keep them for the next start"
            );
        }
        for c in self.shared.components.values() {
            c.ctx.hub.close_all();
        }
        self.shared.bus.close();
        for q in &self.queues {
            q.close();
        }
        for q in &self.request_queues {
            q.close();
        }
        while self.workers.join_next().await.is_some() {}
        let _ = self.stop_relays.send(true);
        while self.relays.join_next().await.is_some() {}
        if let Err(e) = self.host_db.checkpoint().await {
            tracing::warn!("flush of the host's database failed: {e}");
        }
        for c in self.shared.components.values() {
            if let Err(e) = c.ctx.db.checkpoint().await {
                tracing::warn!(component = c.name(), "flush failed: {e}");
            }
        }
        tracing::info!("stopped");
    }

    /// Waits until no event is queued, being handled or waiting in an
    /// outbox.
    async fn wait_idle(&self) {
        let mut quiet_checks = 0;
        while quiet_checks < 2 {
            let queued: usize = self.queues.iter().map(|q| q.len()).sum();
            let outboxes_idle = self.host_outbox.is_idle()
                && self
                    .shared
                    .components
                    .values()
                    .all(|c| c.ctx.outbox.is_idle());
            if queued == 0 && self.shared.busy.load(Ordering::SeqCst) == 0 && outboxes_idle {
                quiet_checks += 1;
            } else {
                quiet_checks = 0;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Calls `on-timer(name)` every `every` until `stop` turns true. Ticks
/// never overlap: a slow tick delays the next.
/// Puts in force what the other hosts share, until `stop`.
async fn follow_revocations(
    feed: crate::bus::RevocationFeed,
    tokens: Arc<TokenService>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            next = feed.recv() => match next {
                Ok(revocations) => tokens
                    .revocations()
                    .apply(&revocations, crate::auth::now_secs()),
                Err(_) => return,
            },
        }
    }
}

async fn timer_loop(
    shared: Arc<Shared>,
    component: Arc<LoadedComponent>,
    name: String,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        shared.busy.fetch_add(1, Ordering::SeqCst);
        // Failures are counted and logged inside; the next tick comes anyway.
        let _ = component.handle_timer(&name).await;
        shared.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Most events one group commit takes from a queue.
pub const MAX_BATCH: usize = 256;
/// Most failed deliveries of one component waiting for a retry at once.
pub const MAX_RETRYING: usize = 1024;

/// One replica's event side: takes what is queued for its group (up to
/// [`MAX_BATCH`] at a time) and delivers it as one group commit. Failed
/// deliveries are retried on tasks of their own; while
/// [`MAX_RETRYING`] of the component's wait, the loop waits too, so that a
/// failing handler holds back its queue instead of filling memory.
async fn event_loop(
    shared: Arc<Shared>,
    component: Arc<LoadedComponent>,
    instance: Arc<str>,
    events: EventReceiver,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = events.recv().await {
        shared.busy.fetch_add(1, Ordering::SeqCst);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        for (delivery, error) in component.handle_events(&instance, &batch).await {
            if let Some(broker) = delivery.broker.clone() {
                // The broker keeps the message and redelivers it itself.
                broker_failed(&component, &delivery, &*broker, &error).await;
                continue;
            }
            let Ok(permit) = component.retry_slots.clone().acquire_owned().await else {
                break;
            };
            shared.busy.fetch_add(1, Ordering::SeqCst);
            component.stats.retrying.fetch_add(1, Ordering::Relaxed);
            let (s, c, i) = (shared.clone(), component.clone(), instance.clone());
            tokio::spawn(async move {
                redeliver(&c, &i, delivery, error).await;
                c.stats.retrying.fetch_sub(1, Ordering::Relaxed);
                s.busy.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            });
        }
        batch.clear();
        shared.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Delivers a failed event again after the backoff, until it succeeds or
/// its attempts are spent; then keeps it as a dead letter and settles it.
async fn redeliver(
    component: &LoadedComponent,
    instance: &Arc<str>,
    delivery: Delivery,
    error: String,
) {
    let policy = component.retry;
    let event = delivery.event.clone();
    let mut attempt = 1;
    let mut error = error;
    while attempt < policy.attempts {
        let delay = policy.delay_after(attempt, rand_unit());
        tracing::warn!(
            component = component.name(),
            event_id = %event.id,
            event_type = %event.event_type,
            attempt,
            "delivery failed ({error}); retrying in {delay:?}"
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
        match component
            .handle_events(instance, std::slice::from_ref(&delivery))
            .await
            .pop()
        {
            None => return,
            Some((_, why)) => error = why,
        }
    }
    // Not kept: unsettled, it stays in its publisher's outbox and comes
    // again after a restart.
    if keep_dead_letter(component, &event, attempt, &error).await {
        delivery.settle();
    }
}

/// Keeps `event`, failed for good after `attempts`, as a dead letter of
/// `component`; whether it is kept (if not, it must not be settled).
async fn keep_dead_letter(
    component: &LoadedComponent,
    event: &Event,
    attempts: u32,
    error: &str,
) -> bool {
    tracing::error!(
        component = component.name(),
        event_id = %event.id,
        event_type = %event.event_type,
        attempts,
        "delivery failed for good ({error}); kept as a dead letter"
    );
    match crate::deadletters::add(&component.ctx.db, event, attempts, error).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(
                component = component.name(),
                event_id = %event.id,
                "cannot keep the dead letter: {e}"
            );
            false
        }
    }
}

/// A delivery from a broker failed: ask for it again after the backoff, or,
/// on its last attempt, keep it as a dead letter (in the component's
/// database and the broker's dead-letter stream) and acknowledge it.
async fn broker_failed(
    component: &LoadedComponent,
    delivery: &Delivery,
    broker: &dyn crate::bus::BrokerMessage,
    error: &str,
) {
    let policy = component.retry;
    let event = &delivery.event;
    let attempt = broker.attempt();
    if attempt < policy.attempts {
        let delay = policy.delay_after(attempt, rand_unit());
        tracing::warn!(
            component = component.name(),
            event_id = %event.id,
            event_type = %event.event_type,
            attempt,
            "delivery failed ({error}); the broker delivers it again in {delay:?}"
        );
        broker.retry_after(delay);
        return;
    }
    // Not kept: unacknowledged, the broker delivers it again after its
    // ack wait.
    if keep_dead_letter(component, event, attempt, error).await {
        broker.dead_letter(component.name(), attempt, error);
        broker.ack();
    }
}

/// A number in [0, 1) for backoff jitter; it needs spread, not secrecy.
fn rand_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// One replica's request side: answers requests for the subjects its group
/// serves, up to `concurrency` at once.
async fn request_loop(
    shared: Arc<Shared>,
    component: Arc<LoadedComponent>,
    instance: Arc<str>,
    requests: RequestReceiver,
) {
    let slots = Arc::new(Semaphore::new(component.limits().concurrency));
    let mut running = JoinSet::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let Ok(req) = requests.recv().await else {
            break;
        };
        shared.busy.fetch_add(1, Ordering::SeqCst);
        let (shared, component, instance) = (shared.clone(), component.clone(), instance.clone());
        running.spawn(async move {
            let answer = component
                .handle_message(
                    instance,
                    req.subject,
                    req.payload,
                    req.correlation_id,
                    req.traceparent,
                )
                .await
                .map_err(|e| e.to_string());
            let _ = req.reply.send(answer);
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            drop(slot);
        });
        // Reap finished tasks so the set does not grow.
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}
