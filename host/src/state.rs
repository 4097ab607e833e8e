//! The per-invocation host state that lives in a wasmtime `Store`.
//!
//! One plain struct with a field per capability: WASI, limits, the
//! invocation's identity, its lazily opened transaction and the events it has
//! published so far (held until commit).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::auth::TokenService;
use crate::bus::{Bus, Event};
use crate::config::{Grants, ResolvedLimits};
use crate::db::{Database, DbError, Tx};
use crate::hub::Hub;
use crate::limits::Limiter;
use crate::outbox::{Committed, Outbox};
use crate::revocations::Revocation;
use crate::stderr::GuestStderr;

/// What every invocation of one component shares.
pub struct ComponentCtx {
    /// The component's name (the event `source`).
    pub name: String,
    /// Its `config` values as text.
    pub config: BTreeMap<String, String>,
    /// Its database.
    pub db: Database,
    /// The outbox of its database: what it published, until delivered.
    pub outbox: Arc<Outbox>,
    /// The bus it publishes to and requests through.
    pub bus: Arc<dyn Bus>,
    /// What it may use beyond its database.
    pub grants: Grants,
    /// Its limits: memory, time, sizes, waits.
    pub limits: ResolvedLimits,
    /// Which guards are on (all of them, outside benchmarks).
    pub sandbox: crate::engine::Sandbox,
    /// A fake clock and seeded randomness, in component tests only.
    pub fakes: Option<Arc<crate::fakes::Fakes>>,
    /// The `.wasm` file it was configured with (what a reload without
    /// bytes, or the file watcher, reads).
    pub wasm: std::path::PathBuf,
    /// The host's token service (issuing needs a grant).
    pub tokens: Arc<TokenService>,
    /// Its WebSocket clients.
    pub hub: Arc<Hub>,
    /// Its attempt counters (`weft:service/throttle`).
    pub throttle: Arc<crate::throttle::Throttle>,
}

/// Who is running and why.
pub struct Invocation {
    /// The component.
    pub component: Arc<ComponentCtx>,
    /// The replica, e.g. `workflows-2`.
    pub instance_id: Arc<str>,
    /// Correlation id of the request or event that caused this invocation.
    pub correlation_id: String,
    /// The event being handled, if this is an event delivery.
    pub causation_id: Option<String>,
    /// This invocation's span in the caller's W3C trace, if the caller
    /// sent one ([`crate::trace`]).
    pub traceparent: Option<String>,
    /// When the invocation must be over.
    pub deadline: Instant,
    /// The session of the verified caller's token (claim `sid`), if any.
    pub session: Option<String>,
    /// The HTTP client's address, if this invocation answers one.
    pub client: Option<std::net::IpAddr>,
}

/// When the invocation's SQL statements must stop: a little before the
/// invocation's own deadline (5 % of its time, at most 50 ms), so that a
/// guest told `timeout` by a statement can still answer.
fn sql_deadline(inv: &Invocation) -> Instant {
    let margin = (inv.component.limits.timeout / 20).min(std::time::Duration::from_millis(50));
    inv.deadline.checked_sub(margin).unwrap_or(inv.deadline)
}

/// At most this many events may be published by one invocation.
pub const MAX_EVENTS_PER_INVOCATION: usize = 1000;

/// The data of one `Store`.
pub struct HostState {
    wasi: WasiCtx,
    /// What the guest wrote to stderr (a panic message).
    pub stderr: GuestStderr,
    table: ResourceTable,
    /// Memory, table and instance caps for this store.
    pub limiter: Limiter,
    /// Who is running.
    pub inv: Invocation,
    /// The transaction: opened by the first storage call, or given at the
    /// start (the savepoint of an event delivery inside a group commit).
    tx: Option<Tx>,
    /// Events published so far, dispatched only after commit.
    pub outbox: Vec<Event>,
    /// WebSocket pushes `(user id, JSON)`, sent only after commit.
    pub pushes: Vec<(String, String)>,
    /// Revocations, stored with the commit and in force after it.
    pub revocations: Vec<Revocation>,
}

/// What a committed invocation hands on: its events and pushes.
#[derive(Debug, Default)]
pub struct Effects {
    /// Events, in publishing order, as stored in the outbox.
    pub events: Vec<Committed>,
    /// WebSocket pushes `(user id, JSON)`.
    pub pushes: Vec<(String, String)>,
    /// Revocations, committed.
    pub revocations: Vec<Revocation>,
}

impl Effects {
    /// Appends another invocation's effects.
    pub fn extend(&mut self, other: Effects) {
        self.events.extend(other.events);
        self.pushes.extend(other.pushes);
        self.revocations.extend(other.revocations);
    }
}

impl HostState {
    /// A fresh state for one invocation; `tx` when the caller opened its
    /// transaction (a savepoint of a [`crate::db::Batch`] it owns).
    pub fn new(inv: Invocation, tx: Option<Tx>) -> HostState {
        // Guests get no files, no environment and no network: only clocks,
        // randomness and a stderr kept for the log (see crate::stderr).
        let stderr = GuestStderr::default();
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone());
        if let Some(fakes) = &inv.component.fakes {
            wasi.wall_clock(fakes.clock.clone())
                .monotonic_clock(fakes.clock.clone())
                .secure_random(fakes.next_random())
                .insecure_random(fakes.next_random());
        }
        let wasi = wasi.build();
        HostState {
            stderr,
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(&inv.component.limits),
            tx: tx.map(|tx| tx.with_deadline(sql_deadline(&inv))),
            inv,
            outbox: Vec::new(),
            pushes: Vec::new(),
            revocations: Vec::new(),
        }
    }

    /// The invocation's transaction, begun on first use. Waiting for the
    /// writer lease is bounded by the host-call timeout and the deadline.
    pub async fn tx(&mut self) -> Result<&Tx, DbError> {
        if self.tx.is_none() {
            let db = &self.inv.component.db;
            let wait = self.host_call_wait();
            self.tx = Some(match tokio::time::timeout(wait, db.begin()).await {
                Ok(tx) => tx?.with_deadline(sql_deadline(&self.inv)),
                Err(_) => {
                    return Err(DbError::Unavailable(format!(
                        "the database stayed busy for {} ms",
                        wait.as_millis()
                    )))
                }
            });
        }
        self.tx
            .as_ref()
            .ok_or_else(|| DbError::Unavailable("transaction vanished".into()))
    }

    /// When this invocation's SQL statements must stop.
    pub fn sql_deadline(&self) -> Instant {
        sql_deadline(&self.inv)
    }

    /// How long one host call may wait: the host-call timeout, never past
    /// the invocation's deadline.
    pub fn host_call_wait(&self) -> std::time::Duration {
        let left = self.inv.deadline.saturating_duration_since(Instant::now());
        self.inv.component.limits.host_call_timeout.min(left)
    }

    /// Now, for the host's own timestamps (the fake clock in tests).
    pub fn now_rfc3339(&self) -> String {
        match &self.inv.component.fakes {
            Some(fakes) => fakes.clock.rfc3339(),
            None => crate::time::now_rfc3339(),
        }
    }

    /// Ends the invocation successfully: writes its events to the outbox
    /// and commits them with its writes, then hands back the events and
    /// pushes to dispatch. On error nothing is committed or dispatched.
    pub async fn commit(mut self) -> Result<Effects, DbError> {
        let held = std::mem::take(&mut self.outbox);
        let mut events = Vec::new();
        if !held.is_empty() {
            events = crate::outbox::append(self.tx().await?, held)?;
        }
        let revocations = std::mem::take(&mut self.revocations);
        if !revocations.is_empty() {
            crate::revocations::store(self.tx().await?, &revocations)?;
        }
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        Ok(Effects {
            events,
            pushes: std::mem::take(&mut self.pushes),
            revocations,
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
