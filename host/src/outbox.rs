//! The transactional outbox: nothing a committed invocation published is
//! lost, whatever happens after the commit.
//!
//! An invocation's events are written to the host table `_weft_outbox` of
//! the publishing component's own database, in the same transaction as its
//! writes ([`append`]). After the commit they are handed to the
//! component's relay ([`Outbox::committed`]), which passes them to the bus
//! in sequence order. A row leaves the outbox only once every subscriber
//! that got it has settled it — committed its handler's writes (with the
//! event id in its inbox) or kept it as a dead letter ([`Receipt`]). A
//! crash at any point leaves the unsettled rows in the table, and the relay
//! of the next start delivers them again; subscribers' inboxes drop what
//! they already handled.
//!
//! Sequence numbers come from `AUTOINCREMENT`, so they only grow, and the
//! ones committed are contiguous (a rolled-back insert rolls back its
//! number too). The relay relies on that: a number beyond the next one
//! expected means it missed some in memory, and it reads them from the
//! table. The in-memory hand-off is bounded; when it is full the relay
//! falls back to reading the table, so a slow subscriber grows the table
//! on disk, never the host's memory, and never slows the publisher.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::bus::{Bus, BusError, Delivery, Event};
use crate::db::{Database, DbError, HostSql, Tx};

/// Events held in memory between commit and relay; more wait in the table.
const HANDOFF: usize = 4096;
/// Rows the relay reads from the table at a time.
const PAGE: i64 = 256;
/// How often settled rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_millis(100);
/// How long a handled event id is remembered, measured back from the newest
/// entry (not from now, so that a host that was down does not forget).
pub const INBOX_RETENTION_SECS: i64 = 7 * 24 * 3600;
/// How often the inbox is trimmed to its retention.
const INBOX_TRIM_EVERY: Duration = Duration::from_secs(600);

/// An event and its place in its publisher's outbox.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Its sequence number in the outbox.
    pub seq: i64,
    /// The event.
    pub event: Arc<Event>,
}

/// Writes `events` to the outbox inside `tx`; their sequence numbers, in
/// order. They become real with the transaction's commit.
pub(crate) fn append(tx: &Tx, events: Vec<Event>) -> Result<Vec<Committed>, DbError> {
    tx.host(|sql| {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let json = serde_json::to_string(&event)
                .map_err(|e| DbError::Invalid(format!("event not serialisable: {e}")))?;
            sql.execute(
                "INSERT INTO _weft_outbox (event, trace) VALUES (?1, ?2)",
                rusqlite::params![json, event.traceparent],
            )?;
            out.push(Committed {
                seq: sql.last_insert_rowid(),
                event: Arc::new(event),
            });
        }
        Ok(out)
    })
}

/// Claims `event_id` in the inbox, in the transaction that will hold the
/// handler's writes: `false` if it was handled before (not to be again).
/// One statement does the check and the record, and it runs outside the
/// handler's savepoint, whose journal would otherwise copy the page.
pub(crate) fn claim(sql: &HostSql<'_>, event_id: &str, now: i64) -> Result<bool, DbError> {
    let inserted = sql.execute(
        "INSERT OR IGNORE INTO _weft_inbox (event_id, handled_at) VALUES (?1, ?2)",
        rusqlite::params![event_id, now],
    )?;
    Ok(inserted == 1)
}

/// Takes back a claim whose handler failed (its writes were rolled back),
/// so that the event is handled when it comes again.
pub(crate) fn unclaim(sql: &HostSql<'_>, event_id: &str) -> Result<(), DbError> {
    sql.execute("DELETE FROM _weft_inbox WHERE event_id = ?1", [event_id])?;
    Ok(())
}

/// Which sent rows still wait for subscribers, and how far the relay got.
#[derive(Debug, Default)]
struct Ledger {
    /// Sent rows not yet settled by every subscriber: seq → settles left.
    pending: BTreeMap<i64, u32>,
    /// The highest sequence number handed to the bus.
    last_sent: i64,
    /// Rows below this number are deleted.
    pruned_below: i64,
    /// Recent watermarks and when they were seen: rows are deleted only
    /// once they were settled a whole resend window ago.
    history: std::collections::VecDeque<(std::time::Instant, i64)>,
}

impl Ledger {
    /// Every row below it is settled.
    fn watermark(&self) -> i64 {
        self.pending
            .keys()
            .next()
            .copied()
            .unwrap_or(self.last_sent + 1)
    }

    /// Rows below the returned number may go: they were settled at least
    /// `window` ago.
    fn prunable(&mut self, window: Duration) -> i64 {
        let now = std::time::Instant::now();
        let current = self.watermark();
        if window.is_zero() {
            return current;
        }
        self.history.push_back((now, current));
        let mut below = self.pruned_below;
        while let Some(&(at, mark)) = self.history.front() {
            if now.duration_since(at) < window {
                break;
            }
            below = below.max(mark);
            self.history.pop_front();
        }
        below
    }

    /// Everything kept is to be sent again (the broker reconnected).
    fn resend_all(&mut self) {
        self.last_sent = self.last_sent.min(self.pruned_below - 1);
        self.pending.clear();
        self.history.clear();
    }
}

/// One database's outbox and its relay's state.
pub struct Outbox {
    owner: String,
    db: Database,
    handoff: async_channel::Sender<Committed>,
    handoff_rx: async_channel::Receiver<Committed>,
    /// Something was committed that the hand-off could not hold.
    behind: AtomicBool,
    wake: Notify,
    /// The highest sequence number known to be committed.
    committed_up_to: AtomicI64,
    ledger: Mutex<Ledger>,
    /// Woken whenever the relay hands rows to the bus (for [`Outbox::sent`]).
    progress: Notify,
}

/// A subscriber's promise to say when it is done with one delivery of an
/// outbox row. Settling is explicit: a delivery that is dropped unsettled
/// (the host stopped) stays in the outbox and is delivered again.
#[derive(Clone)]
pub struct Receipt {
    outbox: Arc<Outbox>,
    seq: i64,
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Receipt({}#{})", self.outbox.owner, self.seq)
    }
}

impl Receipt {
    /// The bus says how many deliveries it made of the row (0: nobody
    /// subscribed, settled at once). Called once, before any settle.
    pub fn expect(&self, deliveries: u32) {
        let mut ledger = self.outbox.lock();
        if deliveries == 0 {
            ledger.pending.remove(&self.seq);
        } else {
            ledger.pending.insert(self.seq, deliveries);
        }
    }

    /// One delivery is done: handled and committed, a duplicate, or kept as
    /// a dead letter.
    pub fn settle(&self) {
        let mut ledger = self.outbox.lock();
        if let Some(left) = ledger.pending.get_mut(&self.seq) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                ledger.pending.remove(&self.seq);
            }
        }
    }
}

/// What an outbox holds that is not delivered everywhere yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Backlog {
    /// Committed, not yet handed to the bus.
    pub unsent: u64,
    /// Handed to the bus, waiting for subscribers to settle.
    pub unsettled: u64,
}

impl Outbox {
    /// The outbox of `db`, whose events `owner` publishes. Rows left by an
    /// earlier run are delivered again once [`Outbox::relay`] runs.
    pub fn open(owner: &str, db: Database) -> Result<Arc<Outbox>, DbError> {
        let (first, last) = db.read(|c| {
            c.query_row(
                "SELECT (SELECT MIN(seq) FROM _weft_outbox),
                        COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '_weft_outbox'), 0)",
                [],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)?)),
            )
        })?;
        let last_sent = first.map_or(last, |f| f - 1);
        if let Some(first) = first {
            tracing::info!(
                component = owner,
                rows = last - first + 1,
                "outbox: delivering what an earlier run committed and did not settle"
            );
        }
        let (handoff, handoff_rx) = async_channel::bounded(HANDOFF);
        Ok(Arc::new(Outbox {
            owner: owner.to_owned(),
            db,
            handoff,
            handoff_rx,
            behind: AtomicBool::new(first.is_some()),
            wake: Notify::new(),
            committed_up_to: AtomicI64::new(last),
            ledger: Mutex::new(Ledger {
                pending: BTreeMap::new(),
                last_sent,
                pruned_below: first.unwrap_or(last + 1),
                history: std::collections::VecDeque::new(),
            }),
            progress: Notify::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands committed rows to the relay. Never waits: what the hand-off
    /// cannot hold the relay reads back from the table.
    pub fn committed(&self, rows: Vec<Committed>) {
        for row in rows {
            self.committed_up_to.fetch_max(row.seq, Ordering::Relaxed);
            if self.handoff.try_send(row).is_err() {
                self.behind.store(true, Ordering::Release);
            }
        }
        self.wake.notify_one();
    }

    /// What is not delivered everywhere yet.
    pub fn backlog(&self) -> Backlog {
        let ledger = self.lock();
        let committed = self.committed_up_to.load(Ordering::Relaxed);
        Backlog {
            unsent: (committed - ledger.last_sent).max(0) as u64,
            unsettled: ledger.pending.len() as u64,
        }
    }

    /// Whether everything committed is delivered and settled (rows kept
    /// for a resend window do not count).
    pub fn is_idle(&self) -> bool {
        self.backlog() == Backlog::default()
    }

    /// Waits until everything committed so far was handed to the bus.
    pub async fn sent(&self) {
        let target = self.committed_up_to.load(Ordering::Relaxed);
        loop {
            // Registered before the check, so a hand-off in between wakes it.
            let progressed = self.progress.notified();
            if self.lock().last_sent >= target {
                return;
            }
            progressed.await;
        }
    }

    /// Hands rows to `bus` in sequence order until `stop` turns true or the
    /// bus closes, and deletes settled rows as it goes (on a task of its
    /// own, so that waiting for the writer lease never holds up delivery).
    pub async fn relay(self: Arc<Self>, bus: Arc<dyn Bus>, mut stop: watch::Receiver<bool>) {
        let window = bus.resend_window();
        let pruner = tokio::spawn(self.clone().prune_loop(window, stop.clone()));
        let mut pause = RETRY_FIRST;
        let mut reconnects = bus.reconnects();
        let mut check = tokio::time::interval(Duration::from_millis(250));
        loop {
            if bus.reconnects() != reconnects {
                reconnects = bus.reconnects();
                if !window.is_zero() {
                    tracing::info!(
                        component = %self.owner,
                        "bus reconnected: sending the events of the last {window:?} again"
                    );
                    self.lock().resend_all();
                    self.behind.store(true, Ordering::Release);
                }
            }
            if self.behind.swap(false, Ordering::AcqRel) {
                let upto = self.committed_up_to.load(Ordering::Relaxed);
                match self.send_stored(&bus, upto + 1).await {
                    Ok(()) => pause = RETRY_FIRST,
                    Err(e) if e.is_transient() => {
                        self.rewind(&e, pause);
                        tokio::select! {
                            _ = stop.changed() => break,
                            _ = tokio::time::sleep(pause) => {}
                        }
                        pause = (pause * 2).min(RETRY_MAX);
                        continue;
                    }
                    Err(e) => {
                        self.stopped_by(e);
                        break;
                    }
                }
            }
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                row = self.handoff_rx.recv() => {
                    let Ok(row) = row else { break };
                    let mut rows = vec![row];
                    while rows.len() < PAGE as usize {
                        match self.handoff_rx.try_recv() {
                            Ok(row) => rows.push(row),
                            Err(_) => break,
                        }
                    }
                    match self.send_fresh(&bus, rows).await {
                        Ok(()) => {}
                        // The rows are in the table: the next round reads
                        // them from there.
                        Err(e) if e.is_transient() => self.rewind(&e, pause),
                        Err(e) => {
                            self.stopped_by(e);
                            break;
                        }
                    }
                }
                _ = self.wake.notified() => {}
                _ = check.tick() => {}
            }
        }
        let _ = pruner.await;
        self.prune(window).await;
    }

    /// After the bus failed: everything not confirmed is sent again from
    /// the table (a broker drops the copies it already has by event id).
    fn rewind(&self, e: &RelayError, pause: Duration) {
        tracing::warn!(
            component = %self.owner,
            "outbox relay: {e}; sending again in {pause:?}"
        );
        let mut ledger = self.lock();
        if let Some(first) = ledger.pending.keys().next().copied() {
            ledger.last_sent = ledger.last_sent.min(first - 1);
        }
        ledger.pending.clear();
        drop(ledger);
        self.behind.store(true, Ordering::Release);
    }

    fn stopped_by(&self, e: RelayError) {
        match e {
            RelayError::Bus(BusError::Closed) => {}
            e => tracing::error!(
                component = %self.owner,
                "outbox relay stopped: {e}; undelivered rows stay for the next start"
            ),
        }
    }

    /// Sends rows that came through memory, reading from the table any it
    /// missed before them.
    async fn send_fresh(
        self: &Arc<Self>,
        bus: &Arc<dyn Bus>,
        rows: Vec<Committed>,
    ) -> Result<(), RelayError> {
        let mut run = Vec::with_capacity(rows.len());
        for row in rows {
            let next = self.lock().last_sent + 1 + run.len() as i64;
            if row.seq < next {
                continue; // sent already, from the table
            }
            if row.seq > next {
                self.post(bus, std::mem::take(&mut run)).await?;
                self.send_stored(bus, row.seq).await?;
                if row.seq <= self.lock().last_sent {
                    continue;
                }
            }
            run.push(row);
        }
        self.post(bus, run).await
    }

    /// Sends the stored rows after the last one sent and before `before`.
    async fn send_stored(
        self: &Arc<Self>,
        bus: &Arc<dyn Bus>,
        before: i64,
    ) -> Result<(), RelayError> {
        loop {
            let after = self.lock().last_sent;
            if after + 1 >= before {
                return Ok(());
            }
            let rows = self.db.read(|c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, event, trace FROM _weft_outbox
                     WHERE seq > ?1 AND seq < ?2 ORDER BY seq LIMIT ?3",
                )?;
                let rows = stmt.query_map([after, before, PAGE], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })?;
            if rows.is_empty() {
                // Nothing stored in the range: numbers without rows.
                self.sent_up_to(before - 1);
                return Ok(());
            }
            let mut batch = Vec::with_capacity(rows.len());
            for (seq, json, traceparent) in rows {
                match serde_json::from_str::<Event>(&json) {
                    Ok(event) => batch.push(Committed {
                        seq,
                        event: Arc::new(Event {
                            traceparent,
                            ..event
                        }),
                    }),
                    Err(e) => {
                        // Only the host writes these rows: a row it cannot
                        // read is a bug or a damaged file. Loud, and skipped
                        // so that it does not block every row after it.
                        tracing::error!(component = %self.owner, seq, "outbox row unreadable, skipped: {e}");
                        self.post(bus, std::mem::take(&mut batch)).await?;
                        self.sent_up_to(seq);
                    }
                }
            }
            self.post(bus, batch).await?;
        }
    }

    /// Hands consecutive rows to the bus, which says how many deliveries
    /// each needs.
    async fn post(
        self: &Arc<Self>,
        bus: &Arc<dyn Bus>,
        rows: Vec<Committed>,
    ) -> Result<(), RelayError> {
        let Some(last) = rows.last().map(|r| r.seq) else {
            return Ok(());
        };
        let mut posted = Vec::with_capacity(rows.len());
        {
            let mut ledger = self.lock();
            for row in rows {
                // Until the bus says how many, the row counts as unsettled.
                ledger.pending.insert(row.seq, 1);
                posted.push(Delivery {
                    event: row.event,
                    broker: None,
                    receipt: Some(Receipt {
                        outbox: self.clone(),
                        seq: row.seq,
                    }),
                });
            }
        }
        bus.publish(posted).await?;
        self.sent_up_to(last);
        Ok(())
    }

    /// Every row up to `seq` is handed to the bus.
    fn sent_up_to(&self, seq: i64) {
        let mut ledger = self.lock();
        ledger.last_sent = ledger.last_sent.max(seq);
        drop(ledger);
        self.progress.notify_waiters();
    }

    async fn prune_loop(self: Arc<Self>, window: Duration, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(PRUNE_EVERY);
        let mut trims = tokio::time::interval(INBOX_TRIM_EVERY);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = ticks.tick() => self.prune(window).await,
                _ = trims.tick() => self.trim_inbox().await,
            }
        }
    }

    /// Deletes the rows every subscriber settled a whole resend `window`
    /// ago (see [`Bus::resend_window`]).
    async fn prune(&self, window: Duration) {
        let (below, done) = {
            let mut ledger = self.lock();
            (ledger.prunable(window), ledger.pruned_below)
        };
        if below <= done {
            return;
        }
        let deleted = self
            .db
            .host_write(|sql| sql.execute("DELETE FROM _weft_outbox WHERE seq < ?1", [below]))
            .await;
        match deleted {
            Ok(_) => {
                let mut ledger = self.lock();
                ledger.pruned_below = ledger.pruned_below.max(below);
            }
            Err(e) => {
                tracing::warn!(component = %self.owner, "outbox: cannot delete settled rows: {e}")
            }
        }
    }

    /// Forgets handled event ids older than the retention.
    async fn trim_inbox(&self) {
        let trimmed = self
            .db
            .host_write(|sql| {
                sql.execute(
                    "DELETE FROM _weft_inbox WHERE handled_at <
                       (SELECT MAX(handled_at) FROM _weft_inbox) - ?1",
                    [INBOX_RETENTION_SECS],
                )
            })
            .await;
        if let Err(e) = trimmed {
            tracing::warn!(component = %self.owner, "inbox: cannot trim: {e}");
        }
    }
}

/// Why the relay stopped or paused.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("reading the outbox: {0}")]
    Db(#[from] DbError),
}

impl RelayError {
    /// Worth trying again (the broker or the disk may come back).
    fn is_transient(&self) -> bool {
        matches!(
            self,
            RelayError::Bus(BusError::Unavailable(_) | BusError::Timeout)
                | RelayError::Db(DbError::Unavailable(_))
        )
    }
}

/// The first pause of the relay after the bus failed; it doubles up to
/// [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::local::LocalBus;
    use crate::config::Synchronous;

    fn event(id: &str, traceparent: Option<&str>) -> Event {
        Event {
            id: id.into(),
            event_type: "test.traced".into(),
            source: "test".into(),
            data: serde_json::json!({}),
            timestamp: "2026-12-01T10:00:00Z".into(),
            correlation_id: "c".into(),
            causation_id: None,
            traceparent: traceparent.map(str::to_owned),
        }
    }

    /// Rows read back from the table (after a crash, or when the hand-off
    /// was full) keep their trace context, which the JSON envelope lacks.
    #[tokio::test]
    async fn rows_read_back_from_the_table_keep_their_trace(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = Database::open(&dir.path().join("p.sqlite"), Synchronous::Normal)?;
        let traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tx = db.begin().await?;
        append(&tx, vec![event("e-1", Some(traced)), event("e-2", None)])?;
        tx.commit().await?; // never handed to a relay: only the table has them
        let bus: Arc<dyn Bus> = Arc::new(LocalBus::new(16));
        let seen = bus.observe(&["test.>".to_owned()]).await?;
        let outbox = Outbox::open("p", db)?;
        let (stop, stopped) = watch::channel(false);
        let relay = tokio::spawn(outbox.relay(bus, stopped));
        let mut got = Vec::new();
        for _ in 0..2 {
            let delivery = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await??;
            got.push((
                delivery.event.id.clone(),
                delivery.event.traceparent.clone(),
            ));
            delivery.settle();
        }
        let _ = stop.send(true);
        relay.await?;
        assert_eq!(
            got,
            vec![
                ("e-1".into(), Some(traced.to_owned())),
                ("e-2".into(), None)
            ]
        );
        Ok(())
    }
}
