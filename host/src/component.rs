//! A loaded component and its invocations.
//!
//! Every invocation — an HTTP request, an event delivery, a request-reply
//! message — gets a fresh `Store` from the component's pre-instantiated
//! `ServicePre`, with memory limits and a deadline. It succeeds or fails as a
//! whole: on success its transaction commits and only then are its events
//! handed to the bus; on a trap, a timeout, a guest error or a 5xx response
//! the transaction rolls back and its events are dropped with it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use wasmtime::{Store, UpdateDeadline};

use crate::bindings::{GuestError, GuestEvent, HttpRequest, HttpResponse, ServicePre};
use crate::bus::{Bus, Delivery};
use crate::config::{ResolvedLimits, ResolvedRetry};
use crate::db::{Batch, DbError, Tx};
use crate::revocations::Revocation;
use crate::state::{ComponentCtx, Effects, HostState, Invocation};

/// Host statements run in a delivery batch before its events (see
/// [`LoadedComponent::deliver`]).
pub(crate) type Prologue = dyn Fn(&Batch) -> Result<(), DbError> + Sync;

/// Consecutive failures after which a component reports `degraded`.
pub const DEGRADED_AFTER: u64 = 5;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The guest trapped (panic, out-of-bounds, out of memory, a host bug).
    #[error("the component trapped: {0}")]
    Trap(String),
    /// It ran past its deadline.
    #[error("the component ran past its {0} ms deadline")]
    Timeout(u128),
    /// The guest returned an error (events and messages).
    #[error("the component returned an error: {0:?}")]
    Guest(GuestError),
    /// It answered HTTP with a 5xx: rolled back, but the answer stands.
    #[error("the component answered {}", .0.status)]
    ServerError(HttpResponse),
    /// It hit one of its limits (memory, table size); the instance was
    /// discarded.
    #[error("the component hit a limit: {0}")]
    LimitExceeded(crate::limits::LimitHit),
    /// Every slot of the component stayed taken for the whole wait.
    #[error("the component was busy: no free slot within {0} ms")]
    Busy(u128),
    /// Its transaction could not commit.
    #[error("commit failed: {0}")]
    Commit(DbError),
}

/// Invocation counts, for `/health`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Invocations that succeeded.
    pub handled: AtomicU64,
    /// Invocations that failed.
    pub failed: AtomicU64,
    /// Failures since the last success.
    pub consecutive_failures: AtomicU64,
    /// Event deliveries skipped because the inbox had their id.
    pub duplicates: AtomicU64,
    /// Failed event deliveries waiting for their next attempt.
    pub retrying: AtomicU64,
}

/// What the host calls.
enum Call {
    Http(HttpRequest),
    Event(GuestEvent),
    Message { subject: String, payload: String },
    Timer(String),
    Migrations,
}

enum Answer {
    Http(HttpResponse),
    Done,
    Message(String),
    Migrations(Vec<String>),
}

/// One version of a component's code, compiled and linked.
pub struct Version {
    /// Imports resolved once.
    pub pre: ServicePre<HostState>,
    /// sha256 of its `.wasm`: the version shown in `/health`.
    pub sha256: String,
}

/// The versions a component has: the one serving, and the one it replaced
/// (for rollback).
struct Versions {
    current: Arc<Version>,
    previous: Option<Arc<Version>>,
}

/// A component ready to run. Its code can be swapped while it runs (see
/// [`LoadedComponent::swap`]): everything else — its database, queues,
/// replicas, counters and slots — stays.
pub struct LoadedComponent {
    /// Shared with every invocation: name, config, database, bus.
    pub ctx: Arc<ComponentCtx>,
    versions: std::sync::RwLock<Versions>,
    /// Swaps done since start.
    pub swaps: AtomicU64,
    /// Held by a reload or rollback, so that they happen one at a time.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// How failed event deliveries are retried.
    pub retry: ResolvedRetry,
    /// Its replicas' ids, `name-1` … `name-N`.
    pub instances: Vec<Arc<str>>,
    /// Counters.
    pub stats: Stats,
    next_instance: AtomicUsize,
    /// HTTP invocations running at once: `concurrency` per replica.
    http_slots: Arc<Semaphore>,
    /// Failed deliveries waiting for a retry (see `runtime::MAX_RETRYING`).
    pub retry_slots: Arc<Semaphore>,
    /// The queue its replicas take events from, if it subscribes.
    pub events: std::sync::OnceLock<crate::bus::EventReceiver>,
}

/// Where one invocation comes from.
pub struct Origin {
    /// The replica that runs it.
    pub instance: Arc<str>,
    /// Its correlation id.
    pub correlation_id: String,
    /// The event it handles, if any.
    pub causation_id: Option<String>,
    /// The caller's `traceparent`, if any; the invocation runs as a child
    /// span of it.
    pub traceparent: Option<String>,
    /// The session of the verified caller's token, if any.
    pub session: Option<String>,
    /// The HTTP client's address, if any.
    pub client: Option<std::net::IpAddr>,
}

impl LoadedComponent {
    /// Wraps a pre-instantiated component.
    pub fn new(
        ctx: Arc<ComponentCtx>,
        version: Version,
        retry: ResolvedRetry,
        replicas: usize,
    ) -> LoadedComponent {
        let http_slots = Arc::new(Semaphore::new(
            ctx.limits.concurrency.saturating_mul(replicas).max(1),
        ));
        let instances = (1..=replicas)
            .map(|i| Arc::from(format!("{}-{i}", ctx.name)))
            .collect();
        LoadedComponent {
            ctx,
            versions: std::sync::RwLock::new(Versions {
                current: Arc::new(version),
                previous: None,
            }),
            swaps: AtomicU64::new(0),
            reload_lock: tokio::sync::Mutex::new(()),
            retry,
            instances,
            stats: Stats::default(),
            next_instance: AtomicUsize::new(0),
            http_slots,
            retry_slots: Arc::new(Semaphore::new(crate::runtime::MAX_RETRYING)),
            events: std::sync::OnceLock::new(),
        }
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.ctx.name
    }

    /// Its limits.
    pub fn limits(&self) -> &ResolvedLimits {
        &self.ctx.limits
    }

    /// The version serving new invocations.
    pub fn current(&self) -> Arc<Version> {
        match self.versions.read() {
            Ok(v) => v.current.clone(),
            Err(poisoned) => poisoned.into_inner().current.clone(),
        }
    }

    /// The version the current one replaced, if any.
    pub fn previous(&self) -> Option<Arc<Version>> {
        match self.versions.read() {
            Ok(v) => v.previous.clone(),
            Err(poisoned) => poisoned.into_inner().previous.clone(),
        }
    }

    /// Makes `next` the current version at once: invocations that start
    /// from now on run it, those in flight finish on the version they began
    /// with (each holds its own `Arc`). The replaced version is kept for
    /// rollback. Returns it.
    pub fn swap(&self, next: Arc<Version>) -> Arc<Version> {
        let mut versions = match self.versions.write() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        let replaced = std::mem::replace(&mut versions.current, next);
        versions.previous = Some(replaced.clone());
        self.swaps.fetch_add(1, Ordering::Relaxed);
        replaced
    }

    /// The next replica in turn, for HTTP requests.
    pub fn next_instance(&self) -> Arc<str> {
        let i = self.next_instance.fetch_add(1, Ordering::Relaxed) % self.instances.len();
        self.instances[i].clone()
    }

    /// Its events not yet handled or settled: queued for it, waiting for a
    /// retry, published by it but not yet delivered everywhere, and (on
    /// NATS) waiting in the stream for its consumer.
    pub fn backlog(&self) -> serde_json::Value {
        let outbox = self.ctx.outbox.backlog();
        let mut backlog = serde_json::json!({
            "queued": self.events.get().map_or(0, |q| q.len()),
            "retrying": self.stats.retrying.load(Ordering::Relaxed),
            "outbox": outbox.unsent + outbox.unsettled,
        });
        if self.events.get().is_some() {
            if let Some(waiting) = self.ctx.bus.stream_backlog(self.name()) {
                backlog["stream"] = waiting.into();
            }
        }
        backlog
    }

    /// `ok` or `degraded`.
    pub fn status(&self) -> &'static str {
        if self.stats.consecutive_failures.load(Ordering::Relaxed) >= DEGRADED_AFTER {
            "degraded"
        } else {
            "ok"
        }
    }

    fn origin(&self, correlation_id: String) -> Origin {
        Origin {
            instance: self.next_instance(),
            correlation_id,
            causation_id: None,
            traceparent: None,
            session: None,
            client: None,
        }
    }

    /// Asks `version` of the component (the current one, or one about to
    /// replace it) for its migrations.
    pub async fn migrations(&self, version: Arc<Version>) -> Result<Vec<String>, InvokeError> {
        let origin = self.origin("migrations".into());
        let result = self
            .invoke_inner(&version, origin, Call::Migrations, None)
            .await;
        match result? {
            (Answer::Migrations(list), _) => Ok(list),
            _ => Err(InvokeError::Trap("unexpected answer".into())),
        }
    }

    /// Runs an HTTP request.
    pub async fn handle_http(
        &self,
        request: HttpRequest,
        correlation_id: String,
        traceparent: Option<String>,
        session: Option<String>,
        client: Option<std::net::IpAddr>,
    ) -> Result<HttpResponse, InvokeError> {
        // A flood of slow requests waits here instead of taking every pooled
        // instance of the host; a request that waited a whole timeout is
        // better answered 503 than served late.
        let wait = self.limits().timeout;
        let _slot = match tokio::time::timeout(wait, self.http_slots.clone().acquire_owned()).await
        {
            Ok(Ok(slot)) => slot,
            _ => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                return Err(InvokeError::Busy(wait.as_millis()));
            }
        };
        let origin = Origin {
            traceparent,
            session,
            client,
            ..self.origin(correlation_id)
        };
        match self.invoke(origin, Call::Http(request), None).await? {
            (Answer::Http(response), events) => {
                self.dispatch(events);
                Ok(response)
            }
            _ => Err(InvokeError::Trap("unexpected answer".into())),
        }
    }

    /// Delivers events on replica `instance` as one group commit: each
    /// event's invocation runs in its own savepoint, one after another, and
    /// one `COMMIT` makes the successful ones durable — their writes, the
    /// events they published (in the outbox) and their ids in the inbox —
    /// before any of their events is dispatched. An event whose id is in the
    /// inbox already was handled before and is not run again. Handled and
    /// duplicate deliveries are settled; the failed ones come back, with why.
    pub async fn handle_events(
        &self,
        instance: &Arc<str>,
        deliveries: &[Delivery],
    ) -> Vec<(Delivery, String)> {
        self.deliver(instance, deliveries, None).await
    }

    /// [`LoadedComponent::handle_events`], running `prologue` in the batch's
    /// transaction first. With a prologue the batch is all or nothing: it
    /// commits only if every delivery succeeds (a dead letter's replay
    /// removes the dead letter with it).
    pub(crate) async fn deliver(
        &self,
        instance: &Arc<str>,
        deliveries: &[Delivery],
        prologue: Option<&Prologue>,
    ) -> Vec<(Delivery, String)> {
        let all_failed = |why: &str| {
            deliveries
                .iter()
                .map(|d| (d.clone(), why.to_owned()))
                .collect()
        };
        let batch = match self.ctx.db.begin_batch().await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(component = self.name(), "cannot start a transaction: {e}");
                self.count_failures(deliveries.len() as u64, 0);
                return all_failed(&e.to_string());
            }
        };
        if let Some(Err(e)) = prologue.map(|p| p(&batch)) {
            return all_failed(&e.to_string());
        }
        let now = crate::time::unix_secs();
        let mut effects = Effects::default();
        let mut failed = Vec::new();
        let mut done = Vec::new();
        // Invocations of this batch counted as handled so far: if the batch
        // cannot commit, they are counted as failed instead.
        let mut handled = 0u64;
        for delivery in deliveries {
            let event = &delivery.event;
            match batch.host(|sql| crate::outbox::claim(sql, &event.id, now)) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(component = self.name(), event_id = %event.id, "already handled; skipped");
                    self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    done.push(delivery);
                    continue;
                }
                Err(e) => {
                    failed.push((delivery.clone(), e.to_string()));
                    continue;
                }
            }
            let origin = Origin {
                instance: instance.clone(),
                correlation_id: event.correlation_id.clone(),
                causation_id: Some(event.id.clone()),
                traceparent: event.traceparent.clone(),
                session: None,
                client: None,
            };
            let call = Call::Event(GuestEvent {
                id: event.id.clone(),
                event_type: event.event_type.clone(),
                source: event.source.clone(),
                data: event.data.to_string(),
                timestamp: event.timestamp.clone(),
                correlation_id: event.correlation_id.clone(),
                causation_id: event.causation_id.clone(),
            });
            let outcome = match batch.savepoint() {
                Ok(savepoint) => self
                    .invoke(origin, call, Some(savepoint))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok((_, e)) => {
                    handled += 1;
                    effects.extend(e);
                    done.push(delivery);
                }
                Err(why) => {
                    // The claim must not outlive the rolled-back writes: if
                    // it cannot be taken back, nothing in the batch commits.
                    let unclaimed = batch.host(|sql| crate::outbox::unclaim(sql, &event.id));
                    if let Err(db) = unclaimed {
                        tracing::error!(component = self.name(), "inbox: {db}");
                        self.count_failures(handled, handled);
                        return all_failed(&format!("inbox: {db}"));
                    }
                    failed.push((delivery.clone(), why));
                }
            }
        }
        if prologue.is_some() && !failed.is_empty() {
            return failed; // all or nothing: the batch rolls back
        }
        if let Err(e) = batch.commit().await {
            tracing::error!(component = self.name(), "group commit failed: {e}");
            self.count_failures(handled, handled);
            return all_failed(&format!("group commit failed: {e}"));
        }
        self.dispatch(effects);
        for delivery in done {
            delivery.settle();
        }
        failed
    }

    /// Re-counts `n` invocations as failed, `were_handled` of which had been
    /// counted as handled.
    fn count_failures(&self, n: u64, were_handled: u64) {
        self.stats
            .handled
            .fetch_sub(were_handled, Ordering::Relaxed);
        self.stats.failed.fetch_add(n, Ordering::Relaxed);
        self.stats
            .consecutive_failures
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Hands a committed invocation's pushes to the hub and its events
    /// (already in the outbox) to the outbox's relay. Never waits.
    fn dispatch(&self, effects: Effects) {
        if !effects.revocations.is_empty() {
            self.ctx
                .tokens
                .revocations()
                .apply(&effects.revocations, crate::auth::now_secs());
            tokio::spawn(share_revocations(self.ctx.bus.clone(), effects.revocations));
        }
        for (user, message) in &effects.pushes {
            self.ctx.hub.push(user, message);
        }
        if !effects.events.is_empty() {
            self.ctx.outbox.committed(effects.events);
        }
    }

    /// Answers one request-reply message on replica `instance`.
    pub async fn handle_message(
        &self,
        instance: Arc<str>,
        subject: String,
        payload: String,
        correlation_id: String,
        traceparent: Option<String>,
    ) -> Result<String, InvokeError> {
        let origin = Origin {
            instance,
            correlation_id,
            causation_id: None,
            traceparent,
            session: None,
            client: None,
        };
        match self
            .invoke(origin, Call::Message { subject, payload }, None)
            .await?
        {
            (Answer::Message(text), events) => {
                self.dispatch(events);
                Ok(text)
            }
            _ => Err(InvokeError::Trap("unexpected answer".into())),
        }
    }

    /// Runs one tick of timer `name` on the next replica in turn.
    pub async fn handle_timer(&self, name: &str) -> Result<(), InvokeError> {
        let origin = self.origin(uuid::Uuid::new_v4().to_string());
        let (_, effects) = self
            .invoke(origin, Call::Timer(name.to_owned()), None)
            .await?;
        self.dispatch(effects);
        Ok(())
    }

    fn new_store(
        &self,
        version: &Version,
        origin: Origin,
        deadline: Instant,
        tx: Option<Tx>,
    ) -> Store<HostState> {
        let inv = Invocation {
            component: self.ctx.clone(),
            instance_id: origin.instance,
            correlation_id: origin.correlation_id,
            causation_id: origin.causation_id,
            traceparent: crate::trace::span_for(origin.traceparent.as_deref())
                .map(|span| span.to_string()),
            deadline,
            session: origin.session,
            client: origin.client,
        };
        let mut store = Store::new(version.pre.engine(), HostState::new(inv, tx));
        let sandbox = self.ctx.sandbox;
        if sandbox.store_limits {
            store.limiter(|s| &mut s.limiter);
        }
        if sandbox.epoch_interruption {
            // Yield to the scheduler at every epoch tick so that a busy guest
            // never holds a worker thread, and trap once the deadline passed.
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(move |_| {
                if Instant::now() >= deadline {
                    Ok(UpdateDeadline::Interrupt)
                } else {
                    Ok(UpdateDeadline::Yield(1))
                }
            });
        }
        store
    }

    /// Runs one invocation; on success its transaction (or savepoint) is
    /// committed and its events are returned for the caller to dispatch.
    async fn invoke(
        &self,
        origin: Origin,
        call: Call,
        tx: Option<Tx>,
    ) -> Result<(Answer, Effects), InvokeError> {
        let version = self.current();
        let result = self.invoke_inner(&version, origin, call, tx).await;
        let stats = &self.stats;
        match &result {
            Ok(_) => {
                stats.handled.fetch_add(1, Ordering::Relaxed);
                stats.consecutive_failures.store(0, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                stats.consecutive_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(component = self.name(), "invocation failed: {e}");
            }
        }
        result
    }

    async fn invoke_inner(
        &self,
        version: &Version,
        origin: Origin,
        call: Call,
        tx: Option<Tx>,
    ) -> Result<(Answer, Effects), InvokeError> {
        let timeout = self.limits().timeout;
        let deadline = Instant::now() + timeout;
        let mut store = self.new_store(version, origin, deadline, tx);
        let run = async {
            let service: crate::bindings::Service =
                version.pre.instantiate_async(&mut store).await?;
            let handler = service.weft_service_handler();
            let answer: Result<Answer, GuestError> = match call {
                Call::Http(req) => Ok(Answer::Http(
                    handler.call_on_request(&mut store, &req).await?,
                )),
                Call::Event(ev) => handler
                    .call_on_event(&mut store, &ev)
                    .await?
                    .map(|()| Answer::Done),
                Call::Message { subject, payload } => handler
                    .call_on_message(&mut store, &subject, &payload)
                    .await?
                    .map(Answer::Message),
                Call::Timer(name) => handler
                    .call_on_timer(&mut store, &name)
                    .await?
                    .map(|()| Answer::Done),
                Call::Migrations => Ok(Answer::Migrations(
                    handler.call_migrations(&mut store).await?,
                )),
            };
            wasmtime::Result::<_>::Ok(answer)
        };
        let answer = match tokio::time::timeout(timeout, run).await {
            Err(_) => return Err(InvokeError::Timeout(timeout.as_millis())),
            Ok(Err(trap)) => {
                if let Some(hit) = store.data_mut().limiter.hit.take() {
                    return Err(InvokeError::LimitExceeded(hit));
                }
                if Instant::now() >= deadline {
                    return Err(InvokeError::Timeout(timeout.as_millis()));
                }
                // The guest's own words (a panic message) first, then
                // wasmtime's reason and wasm backtrace.
                let said = store.data().stderr.text();
                return Err(InvokeError::Trap(match said {
                    Some(said) => format!("{said} | {trap:?}"),
                    None => format!("{trap:?}"),
                }));
            }
            Ok(Ok(Err(guest))) => return Err(InvokeError::Guest(guest)),
            Ok(Ok(Ok(answer))) => answer,
        };
        if let Answer::Http(response) = &answer {
            if response.status >= 500 {
                return Err(InvokeError::ServerError(response.clone()));
            }
        }
        let effects = store
            .into_data()
            .commit()
            .await
            .map_err(InvokeError::Commit)?;
        Ok((answer, effects))
    }
}

/// Tells the other hosts on the bus about committed revocations, trying
/// again while the bus is away, until none of them is in force any more
/// (each host also shares what its databases hold when it starts).
async fn share_revocations(bus: Arc<dyn Bus>, revocations: Vec<Revocation>) {
    let until = revocations
        .iter()
        .map(Revocation::expires)
        .max()
        .unwrap_or(0);
    let mut wait = Duration::from_millis(100);
    while let Err(e) = bus.share_revocations(&revocations).await {
        if crate::auth::now_secs() >= until {
            return;
        }
        tracing::warn!("cannot share revocations with the other hosts yet: {e}");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
