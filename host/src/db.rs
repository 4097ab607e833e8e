//! One SQLite database per component, owned by one thread.
//!
//! An invocation's statements form one transaction ([`Tx`]): it takes the
//! database's writer lease (an async mutex) with its first statement, and
//! ends with a commit or — if it is dropped unfinished, e.g. after a trap
//! or a timeout — a rollback, before the lease passes on.
//!
//! Group commit: a `COMMIT` writes every page the transaction touched to
//! the WAL, and that write cost more than the rest of a small invocation.
//! So the connection keeps one transaction open across invocations: each
//! runs in a savepoint of it, and one that finishes while others wait for
//! the lease releases its savepoint, hands the lease on and waits for the
//! commit that the last of the group makes. Nobody hears "committed"
//! before the `COMMIT` that made it durable; a failed `COMMIT` fails every
//! invocation in it, and a failed invocation rolls back only its savepoint.
//!
//! Statements run inline: in WAL mode without automatic checkpoints they
//! take microseconds and never wait for the disk (under the default
//! `synchronous = NORMAL`). The one slow step, the checkpoint with its
//! fsync, runs on a thread of its own per database.
//!
//! Guests run under an authorizer: they cannot touch host tables (`_weft_*`)
//! or `sqlite_sequence` (which numbers the outbox), attach other files, run
//! pragmas (so SQLite itself refuses direct writes to the schema table), or
//! end the host's transaction. And under
//! bounds ([`GuestBounds`]): every guest statement stops at its
//! invocation's deadline (a progress handler), SQLite's own limits cap what
//! one statement may allocate, and `max_page_count` caps the file. A guest
//! statement that runs long hands its tokio worker's other tasks to a new
//! worker thread (see [`Watch`]), so it never stalls HTTP or other
//! components.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode};

use crate::config::Synchronous;

/// At most this many rows come back from one query.
pub const MAX_ROWS: usize = 10_000;
/// At most this many bytes of values come back from one query.
pub const MAX_RESULT_BYTES: usize = 16 << 20;
/// Host-owned tables start with this prefix; guests cannot see them.
pub const HOST_TABLE_PREFIX: &str = "_weft_";

/// Database failures, sorted by what a caller can do about them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DbError {
    /// Bad SQL or parameters; the same call fails again.
    #[error("{0}")]
    Invalid(String),
    /// A constraint (UNIQUE, CHECK, FOREIGN KEY, NOT NULL) would be broken.
    #[error("{0}")]
    Conflict(String),
    /// The statement touches something guests may not.
    #[error("{0}")]
    Denied(String),
    /// Too many rows or bytes, a value too large, or the database full.
    #[error("{0}")]
    LimitExceeded(String),
    /// The statement ran into its invocation's deadline and was stopped.
    #[error("the statement ran past the invocation's deadline")]
    Timeout,
    /// The database cannot do it now (busy, I/O, closed).
    #[error("{0}")]
    Unavailable(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        let message = e.to_string();
        match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => DbError::Conflict(message),
            Some(ErrorCode::AuthorizationForStatementDenied) => {
                DbError::Denied(format!("not allowed for components: {message}"))
            }
            // SQLite reports a denied function as a plain error.
            _ if message.contains("not authorized") => {
                DbError::Denied(format!("not allowed for components: {message}"))
            }
            Some(ErrorCode::OperationInterrupted) => DbError::Timeout,
            Some(ErrorCode::TooBig) => DbError::LimitExceeded(format!(
                "{message} (a value, statement or row past the component's SQLite limits)"
            )),
            Some(ErrorCode::DiskFull) => DbError::LimitExceeded(format!(
                "{message} (the database reached its size cap, limits.max_db_mib, or the disk is full)"
            )),
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory,
            ) => DbError::Unavailable(message),
            _ => DbError::Invalid(message),
        }
    }
}

/// A query's result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of values.
    pub rows: Vec<Vec<Value>>,
}

/// The connection and the authorizer's switch.
struct Worker {
    conn: Connection,
    guest_mode: Arc<AtomicBool>,
    /// The running guest statement's deadline, for the progress handler.
    watch: Arc<Watch>,
    /// Pages the file may have before a guest write is refused (the
    /// component's `max_db_mib`); `max_page_count` stops the file a little
    /// above it.
    room_pages: i64,
    /// Prefixed to the host's cached statements. The statement cache is
    /// keyed by SQL text and a cached statement is not authorised again, so
    /// a guest that sent the same text as a host statement would get it
    /// unchecked; it cannot guess this per-database nonce.
    host_prefix: String,
}

impl Worker {
    /// Refuses a guest write once the file has reached its cap. Checked
    /// before the write rather than left to `max_page_count`: SQLite's
    /// `SQLITE_FULL` rolls back the whole transaction (every member of the
    /// group with it), a refusal here only this statement.
    fn check_room(&self) -> Result<(), DbError> {
        if self.room_pages == i64::MAX {
            return Ok(());
        }
        let pages: i64 = self.host(|h| {
            let mut stmt = h
                .conn
                .prepare_cached(&format!("{}PRAGMA page_count", h.prefix))?;
            Ok::<_, DbError>(stmt.query_row([], |r| r.get(0))?)
        })?;
        if pages >= self.room_pages {
            return Err(DbError::LimitExceeded(
                "the database reached its size cap (limits.max_db_mib)".into(),
            ));
        }
        Ok(())
    }

    /// Runs `f` with the authorizer off (host statements).
    fn as_host<R>(&mut self, f: impl FnOnce(&mut Connection) -> R) -> R {
        self.guest_mode.store(false, Ordering::Relaxed);
        let r = f(&mut self.conn);
        self.guest_mode.store(true, Ordering::Relaxed);
        r
    }

    /// Runs `f` on host statements: the authorizer is off, and the cached
    /// statements carry the host prefix.
    fn host<R>(&self, f: impl FnOnce(&HostSql<'_>) -> R) -> R {
        self.guest_mode.store(false, Ordering::Relaxed);
        let r = f(&HostSql {
            conn: &self.conn,
            prefix: &self.host_prefix,
        });
        self.guest_mode.store(true, Ordering::Relaxed);
        r
    }
}

/// What the progress handler knows of the guest statement that runs: its
/// deadline, and when it last handed its worker on. Times are nanoseconds
/// since `base`; a deadline of 0 means a host statement, never stopped.
struct Watch {
    base: Instant,
    deadline: AtomicU64,
    /// When the statement started or last handed its worker's other tasks
    /// on.
    handed_off: AtomicU64,
}

/// SQLite calls the progress handler every this many virtual machine
/// steps: often enough to stop within a millisecond of the deadline.
const PROGRESS_STEPS: std::ffi::c_int = 1000;

/// A guest statement that has run this long hands its worker's other
/// tasks to another thread (and again every so long while it runs).
const HAND_OFF_AFTER: Duration = Duration::from_millis(2);

/// How long the hand-off lets the new worker thread take over the tasks.
const HAND_OFF_WAIT: Duration = Duration::from_micros(200);

impl Watch {
    fn new() -> Watch {
        Watch {
            base: Instant::now(),
            deadline: AtomicU64::new(0),
            handed_off: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Arms the handler for a guest statement that must end by `deadline`.
    fn arm(&self, deadline: Instant) {
        self.handed_off
            .store(self.nanos(Instant::now()), Ordering::Relaxed);
        self.deadline
            .store(self.nanos(deadline).max(1), Ordering::Relaxed);
    }

    fn disarm(&self) {
        self.deadline.store(0, Ordering::Relaxed);
    }

    /// The progress handler: `true` stops the statement.
    ///
    /// Statements run inline on the tokio worker of their invocation,
    /// because a hop to another thread costs more than a typical statement.
    /// One that runs long would stall every task queued on that worker (the
    /// gateway's, other components'), so after [`HAND_OFF_AFTER`] it calls
    /// `block_in_place`: tokio hands the worker's queue to a new worker
    /// thread, and this thread finishes the statement (and the rest of the
    /// invocation's poll) as a blocking thread. The short wait inside lets
    /// the new thread take the queue before this one would take it back.
    fn progress(&self) -> bool {
        let deadline = self.deadline.load(Ordering::Relaxed);
        if deadline == 0 {
            return false;
        }
        let now = self.nanos(Instant::now());
        if now >= deadline {
            return true;
        }
        let last = self.handed_off.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= HAND_OFF_AFTER.as_nanos() as u64 {
            self.handed_off.store(now, Ordering::Relaxed);
            off_workers(|| std::thread::sleep(HAND_OFF_WAIT));
        }
        false
    }
}

/// The connection of guests' committed reads.
struct GuestReader {
    conn: Connection,
    watch: Arc<Watch>,
}

/// Idle guest reader connections a database keeps.
const KEPT_GUEST_READERS: usize = 4;

impl GuestReader {
    fn open(path: &Path, max_value_bytes: i32) -> Result<GuestReader, DbError> {
        let mut conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
        for (limit, value) in STATEMENT_LIMITS {
            conn.set_limit(limit, value)?;
        }
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, max_value_bytes)?;
        let watch = Arc::new(Watch::new());
        let handler = watch.clone();
        conn.progress_handler(PROGRESS_STEPS, Some(move || handler.progress()))?;
        conn.authorizer(Some(|ctx: AuthContext<'_>| guest_authorization(&ctx)))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(GuestReader { conn, watch })
    }

    fn query(
        &self,
        sql: &str,
        params: &[rusqlite::types::Value],
        deadline: Instant,
    ) -> Result<Rows, DbError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        if !stmt.readonly() {
            return Err(DbError::Invalid(
                "query-committed only reads; write with execute".into(),
            ));
        }
        self.watch.arm(deadline);
        let rows = collect_rows(&mut stmt, params);
        self.watch.disarm();
        rows
    }
}

/// Pages past a component's cap at which SQLite itself stops the file.
const HARD_STOP_SLACK_PAGES: i64 = 1024;

/// What bounds a component's SQL beyond its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestBounds {
    /// The largest string or blob, and so roughly the most one value may
    /// allocate (`SQLITE_LIMIT_LENGTH`).
    pub max_value_bytes: usize,
    /// The largest the database file may grow (`max_page_count`).
    pub max_db_bytes: u64,
}

impl GuestBounds {
    /// The bounds of a component with these limits: a value of at most a
    /// quarter of its memory limit (but room for its largest payload
    /// twice over, which the host stores as an outbox row), and its
    /// database cap.
    pub fn for_limits(limits: &crate::config::ResolvedLimits) -> GuestBounds {
        let quarter = limits.memory_bytes / 4;
        let payload = limits.max_payload_bytes.saturating_mul(2) + (64 << 10);
        GuestBounds {
            max_value_bytes: quarter.max(payload).max(1 << 20),
            max_db_bytes: limits.max_db_bytes,
        }
    }
}

/// SQLite's own limits on one guest statement, beside the value length:
/// SQL text, columns, expression depth, compound selects, parameters,
/// trigger recursion. Each is far above what the shipped components use
/// and far below SQLite's defaults, which allow statements that allocate
/// without bound before they fail.
const STATEMENT_LIMITS: [(Limit, i32); 7] = [
    (Limit::SQLITE_LIMIT_SQL_LENGTH, 64 * 1024 + 1024),
    (Limit::SQLITE_LIMIT_COLUMN, 256),
    (Limit::SQLITE_LIMIT_EXPR_DEPTH, 256),
    (Limit::SQLITE_LIMIT_COMPOUND_SELECT, 64),
    (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 999),
    (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 16),
    (Limit::SQLITE_LIMIT_FUNCTION_ARG, 32),
];

/// A handle to a component's database. Clones share the connection.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    synchronous: Synchronous,
    worker: std::sync::Mutex<Worker>,
    /// A second, read-only connection: host reads of committed data (the
    /// outbox relay, counts for `/health`) never see an invocation's
    /// uncommitted writes, as they would on the writer's connection.
    reader: std::sync::Mutex<Connection>,
    /// Read-only connections for guests' reads of committed data
    /// (`storage.query-committed`): the writer's authorizer, limits and
    /// deadline, without the writer lease. One per concurrent read, so a
    /// long read never holds up another; a few are kept for reuse.
    guest_readers: std::sync::Mutex<Vec<GuestReader>>,
    /// The largest value a guest statement may make (`GuestBounds`).
    guest_value_limit: std::sync::atomic::AtomicI32,
    lease: Arc<tokio::sync::Mutex<()>>,
    /// How many wait for the lease (tokio's mutex does not say): a
    /// finishing invocation leaves the transaction open only for them.
    waiting: AtomicUsize,
    /// The transaction open across invocations (group commit).
    group: std::sync::Mutex<Group>,
    /// `COMMIT`s of group transactions that succeeded.
    commits: std::sync::atomic::AtomicU64,
    /// Frames in the WAL after the last commit (SQLite's WAL hook).
    wal_frames: Arc<AtomicUsize>,
    /// Frames of the WAL the last checkpoint (the checkpoint thread's or
    /// the writer's) had copied into the database file.
    copied: Arc<AtomicUsize>,
    /// Wakes the checkpoint thread; dropping it stops the thread.
    checkpointer: std::sync::mpsc::SyncSender<()>,
    /// Held for every checkpoint: SQLite runs one at a time and makes
    /// another fail at once, so the writer's catch-up would fail whenever
    /// the thread's checkpoint runs, and it runs most of the time under
    /// steady writes.
    checkpointing: Arc<std::sync::Mutex<()>>,
}

/// The host's own tables in every database: dead letters, the outbox of
/// events published in committed transactions and not yet delivered
/// everywhere, and the inbox of event ids already handled (deduplication).
const HOST_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS _weft_dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        event TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        failed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));
    CREATE TABLE IF NOT EXISTS _weft_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event TEXT NOT NULL,
        trace TEXT);
    CREATE TABLE IF NOT EXISTS _weft_inbox (
        event_id TEXT PRIMARY KEY,
        handled_at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS _weft_inbox_by_time ON _weft_inbox(handled_at);";

/// Runs `f`, which waits for the disk, off the runtime's workers where the
/// runtime allows it (a multi-threaded one), so guests keep running.
fn off_workers<R>(f: impl FnOnce() -> R) -> R {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// The most invocations one group commit takes.
const MAX_GROUP: usize = 256;

/// The transaction the connection holds open across invocations; whether
/// it is open is the connection's own state ([`Database::in_transaction`]).
#[derive(Default)]
struct Group {
    /// Invocations whose savepoints are released into it, each waiting for
    /// the `COMMIT`.
    pending: Vec<tokio::sync::oneshot::Sender<Result<(), DbError>>>,
}

/// WAL frames (pages) after which the writer itself finishes the
/// checkpoint between two transactions (see [`Database::catch_up`]).
const CATCH_UP_FRAMES: usize = 4096;

/// The writer finishes the checkpoint only once the checkpoint thread has
/// left at most this many frames to copy: it does so holding the writer
/// lease, so every invocation waits for it.
const CATCH_UP_TAIL: usize = 512;

/// WAL frames past which the writer catches up whatever the checkpoint
/// thread has left: under a heavy writer it may never get close.
const CATCH_UP_ANYWAY_FRAMES: usize = 4 * CATCH_UP_FRAMES;

/// How often the checkpoint thread folds the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl Database {
    /// Opens (creating if needed) the database at `path` in WAL mode.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Database, DbError> {
        if let Some(dir) = path.parent() {
            crate::private::create_dir(dir)
                .map_err(|e| DbError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        crate::private::create_file(path)
            .map_err(|e| DbError::Unavailable(format!("{}: {e}", path.display())))?;
        let mut conn = Connection::open(path)?;
        let sync = match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        // Checkpoints (the only step that waits for the disk under NORMAL)
        // run on their own thread, so statements never do.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
             PRAGMA wal_autocheckpoint = 0;"
        ))?;
        for (limit, value) in STATEMENT_LIMITS {
            conn.set_limit(limit, value)?;
        }
        let watch = Arc::new(Watch::new());
        let handler = watch.clone();
        conn.progress_handler(PROGRESS_STEPS, Some(move || handler.progress()))?;
        conn.set_prepared_statement_cache_capacity(256);
        let wal_frames = Arc::new(AtomicUsize::new(0));
        let copied = Arc::new(AtomicUsize::new(0));
        let (frames, seen) = (wal_frames.clone(), copied.clone());
        conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, n: std::ffi::c_int| {
                let n = usize::try_from(n).unwrap_or(0);
                if n < frames.swap(n, Ordering::Relaxed) {
                    // The WAL started over: what was copied of the old one
                    // says nothing about the new one.
                    seen.store(0, Ordering::Relaxed);
                }
                Ok(())
            },
        ))?;
        conn.execute_batch(HOST_TABLES)?;
        conn.execute_batch(crate::revocations::TABLE)?;
        // Outboxes made before events carried a trace context.
        let traced: bool = conn.query_row(
            "SELECT count(*) FROM pragma_table_info('_weft_outbox') WHERE name = 'trace'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !traced {
            conn.execute_batch("ALTER TABLE _weft_outbox ADD COLUMN trace TEXT")?;
        }
        let guest_mode = Arc::new(AtomicBool::new(true));
        let flag = guest_mode.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            if flag.load(Ordering::Relaxed) {
                guest_authorization(&ctx)
            } else {
                Authorization::Allow
            }
        }))?;
        let checkpointing = Arc::new(std::sync::Mutex::new(()));
        let checkpointer = start_checkpointer(path, copied.clone(), checkpointing.clone())?;
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.execute_batch("PRAGMA busy_timeout = 5000;")?;
        let host_prefix = format!("/* weft-host {} */ ", uuid::Uuid::new_v4().simple());
        Ok(Database {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                synchronous,
                reader: std::sync::Mutex::new(reader),
                guest_readers: std::sync::Mutex::default(),
                guest_value_limit: std::sync::atomic::AtomicI32::new(i32::MAX),
                worker: std::sync::Mutex::new(Worker {
                    conn,
                    guest_mode,
                    watch,
                    room_pages: i64::MAX,
                    host_prefix,
                }),
                lease: Arc::new(tokio::sync::Mutex::new(())),
                waiting: AtomicUsize::new(0),
                group: std::sync::Mutex::new(Group::default()),
                commits: std::sync::atomic::AtomicU64::new(0),
                wal_frames,
                copied,
                checkpointer,
                checkpointing,
            }),
        })
    }

    /// Bounds what guest statements may allocate and how large the file
    /// may grow (see [`GuestBounds`]).
    pub fn bound(&self, bounds: GuestBounds) -> Result<(), DbError> {
        let length = i32::try_from(bounds.max_value_bytes).unwrap_or(i32::MAX);
        self.inner
            .guest_value_limit
            .store(length, Ordering::Relaxed);
        lock(&self.inner.guest_readers).clear();
        self.run(|w| {
            w.conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, length)?;
            let page_size: i64 =
                w.as_host(|c| c.query_row("PRAGMA page_size", [], |r| r.get(0)))?;
            let room = i64::try_from(bounds.max_db_bytes)
                .unwrap_or(i64::MAX)
                .checked_div(page_size.max(512))
                .unwrap_or(i64::MAX)
                .max(1);
            // The hard stop leaves room for the statement that passed the
            // check and for the host's own rows (outbox, dead letters).
            let hard = room.saturating_add((room / 4).max(HARD_STOP_SLACK_PAGES));
            w.room_pages = room;
            w.as_host(|c| c.query_row(&format!("PRAGMA max_page_count = {hard}"), [], |_| Ok(())))?;
            Ok(())
        })
    }

    /// Runs a guest's read-only statement on committed data, outside any
    /// transaction and without the writer lease, stopped at `deadline`.
    pub fn query_committed(
        &self,
        sql: &str,
        params: &[rusqlite::types::Value],
        deadline: Instant,
    ) -> Result<Rows, DbError> {
        let pooled = lock(&self.inner.guest_readers).pop();
        let reader = match pooled {
            Some(reader) => reader,
            None => GuestReader::open(
                &self.inner.path,
                self.inner.guest_value_limit.load(Ordering::Relaxed),
            )?,
        };
        let rows = reader.query(sql, params, deadline);
        let mut pool = lock(&self.inner.guest_readers);
        if pool.len() < KEPT_GUEST_READERS {
            pool.push(reader);
        }
        rows
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Group transactions committed so far. Invocations handled per commit
    /// is the mean size of a group (the NATS benchmark prints it).
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Runs `f` on the connection. Statements take microseconds in WAL mode
    /// without checkpoints, so they run inline: a hop to a database thread
    /// cost more than the statement (measured: 72 µs vs 9 µs per
    /// transaction; see BENCHMARKS.md).
    fn run<R>(&self, f: impl FnOnce(&mut Worker) -> R) -> R {
        f(&mut lock(&self.inner.worker))
    }

    async fn call<R>(&self, f: impl FnOnce(&mut Worker) -> R) -> Result<R, DbError> {
        Ok(self.run(f))
    }

    /// Starts an invocation's transaction; waits for the writer lease.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        let lease = self.acquire().await;
        if !self.in_transaction() {
            // Work released into a transaction that is gone: SQLite rolled
            // it back by itself (after some I/O errors).
            self.tell_group(Err(DbError::Unavailable(
                "SQLite rolled the group transaction back".into(),
            )));
            self.host_sql("BEGIN IMMEDIATE")?;
        }
        if let Err(e) = self.host_sql(&format!("SAVEPOINT {MEMBER}")) {
            self.abandon();
            return Err(e);
        }
        Ok(Tx {
            db: self.clone(),
            deadline: None,
            lease: Some(lease),
            savepoint_open: false,
        })
    }

    /// Waits for the writer lease, counted among the waiters meanwhile.
    async fn acquire(&self) -> tokio::sync::OwnedMutexGuard<()> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.inner.waiting);
        self.inner.lease.clone().lock_owned().await
    }

    fn group(&self) -> std::sync::MutexGuard<'_, Group> {
        lock(&self.inner.group)
    }

    /// Commits the open transaction and tells everyone in it how that went.
    /// Only the lease holder may call it.
    fn close_group(&self) {
        match self.commit_durably() {
            Ok(()) => {
                self.inner.commits.fetch_add(1, Ordering::Relaxed);
                self.tell_group(Ok(()));
                let frames = self.inner.wal_frames.load(Ordering::Relaxed);
                if frames >= CATCH_UP_FRAMES {
                    if frames.saturating_sub(self.inner.copied.load(Ordering::Relaxed))
                        <= CATCH_UP_TAIL
                        || frames >= CATCH_UP_ANYWAY_FRAMES
                    {
                        self.catch_up();
                    } else {
                        // A wake-up already queued is enough.
                        let _ = self.inner.checkpointer.try_send(());
                    }
                }
            }
            Err(e) => {
                // A failed COMMIT can leave the transaction open.
                let _ = self.host_sql("ROLLBACK");
                self.tell_group(Err(e));
            }
        }
    }

    /// Ends the group: everyone in it hears `outcome`.
    fn tell_group(&self, outcome: Result<(), DbError>) {
        let pending = std::mem::take(&mut self.group().pending);
        for member in pending {
            let _ = member.send(outcome.clone());
        }
    }

    /// After a member ended without committing (lease held): an open
    /// transaction that holds nobody else's work is rolled back; one that
    /// does is left to its members, who queue for the lease to commit it.
    fn abandon(&self) {
        if self.group().pending.is_empty() && self.in_transaction() {
            let _ = self.host_sql("ROLLBACK");
        }
    }

    /// Starts a group commit for several invocations (see [`Batch`]).
    pub async fn begin_batch(&self) -> Result<Batch, DbError> {
        Ok(Batch {
            tx: self.begin().await?,
        })
    }

    /// A savepoint inside the batch that currently holds the lease. Only a
    /// [`Batch`]'s owner may call this, while the batch is alive.
    pub(crate) fn open_savepoint(&self) -> Result<Tx, DbError> {
        if !self.in_transaction() {
            // A SAVEPOINT here would begin a transaction of its own.
            return Err(rolled_back());
        }
        self.host_sql(&format!("SAVEPOINT {SAVEPOINT}"))?;
        Ok(Tx {
            db: self.clone(),
            deadline: None,
            lease: None,
            savepoint_open: true,
        })
    }

    /// Runs one host statement (transaction control) from the statement
    /// cache: parsing `SAVEPOINT`/`RELEASE`/`COMMIT` again for every
    /// event cost more than running them.
    fn host_sql(&self, sql: &str) -> Result<(), DbError> {
        self.run(|w| w.host(|h| h.execute(sql, []).map(|_| ())))
    }

    /// Rolls back and ends savepoint `name` (an invocation that failed).
    fn undo_savepoint(&self, name: &str) {
        let _ = self
            .host_sql(&format!("ROLLBACK TO {name}"))
            .and_then(|()| self.host_sql(&format!("RELEASE {name}")));
    }

    /// Whether the connection is inside a transaction (SQLite rolls one
    /// back by itself after some I/O errors).
    fn in_transaction(&self) -> bool {
        self.run(|w| !w.conn.is_autocommit())
    }

    /// `COMMIT`. Under FULL it waits for fsync: that runs off the workers
    /// that run guests, where the runtime allows it.
    fn commit_durably(&self) -> Result<(), DbError> {
        if self.inner.synchronous == Synchronous::Full {
            off_workers(|| self.host_sql("COMMIT"))
        } else {
            self.host_sql("COMMIT")
        }
    }

    /// Finishes the checkpoint on the writer, between two transactions.
    /// The checkpoint thread copies the WAL into the file alongside the
    /// writer, but under steady writes it never catches up with the last
    /// frames, so SQLite never starts the WAL over and it grows without
    /// end (1 GB in 6 s of `workflows.create`). With nothing appended
    /// meanwhile this one copies the last frames, and the next transaction
    /// starts the WAL from its beginning. It runs only once the checkpoint
    /// thread has left a short tail: copying a whole WAL here held the
    /// lease for 10 ms, and a catch-up that found the thread's checkpoint
    /// running or a reader in the way did not start the WAL over, so the
    /// next commit tried again.
    fn catch_up(&self) {
        let done = off_workers(|| {
            let _one_at_a_time = lock(&self.inner.checkpointing);
            self.run(|w| w.as_host(|c| c.query_row(CHECKPOINT, [], checkpoint_result)))
        });
        match done {
            Ok(Some((_, copied))) => self.inner.copied.store(copied, Ordering::Relaxed),
            Ok(None) => {} // the checkpoint thread's own was running
            Err(e) => tracing::warn!(db = %self.inner.path.display(), "checkpoint: {e}"),
        }
    }

    /// Applies the migrations after the ones already applied, in one
    /// transaction. Returns how many ran. Migration SQL runs as guest SQL.
    /// Each statement stops after `time` (the component's invocation
    /// timeout): a migration is guest SQL too.
    pub async fn migrate(
        &self,
        statements: Vec<String>,
        time: Duration,
    ) -> Result<usize, MigrationError> {
        let _lease = self.acquire().await;
        if self.in_transaction() {
            self.close_group(); // migrations run in a transaction of their own
        }
        self.call(move |w| migrate(w, &statements, time))
            .await
            .map_err(|e| MigrationError { index: 0, error: e })?
    }

    /// How many dead letters are kept.
    pub fn dead_letter_count(&self) -> u64 {
        self.read(|c| {
            c.query_row("SELECT count(*) FROM _weft_dead_letters", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|n| n.max(0) as u64)
        .unwrap_or(0)
    }

    /// Folds the write-ahead log into the database file (on shutdown).
    pub async fn checkpoint(&self) -> Result<(), DbError> {
        self.call(|w| w.as_host(|c| c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")))
            .await??;
        Ok(())
    }

    /// A read on the host's behalf, outside any invocation (for tests and
    /// tools): runs `sql` and returns its rows, without the authorizer.
    pub async fn host_query(&self, sql: &str) -> Result<Rows, DbError> {
        let sql = sql.to_owned();
        // Host statements are never cached: a cached statement skips the
        // authorizer, and a guest must not reuse one prepared for the host.
        self.call(move |w| {
            w.as_host(|c| {
                let mut stmt = c.prepare(&sql)?;
                collect_rows(&mut stmt, &[])
            })
        })
        .await?
    }
}

impl Database {
    /// Reads committed data on the host's behalf through the read-only
    /// connection (never inside an invocation's transaction).
    pub(crate) fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R>,
    ) -> Result<R, DbError> {
        f(&lock(&self.inner.reader)).map_err(DbError::from)
    }

    /// Runs host statements `f` in a transaction of their own, under the
    /// writer lease (so never inside an invocation's transaction).
    pub(crate) async fn host_write<R>(
        &self,
        f: impl FnOnce(&HostSql<'_>) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        let tx = self.begin().await?;
        let r = tx.host(f)?;
        tx.commit().await?;
        Ok(r)
    }
}

/// Host statements inside a transaction: the authorizer is off and the
/// statements are cached under the database's host prefix.
pub(crate) struct HostSql<'a> {
    conn: &'a Connection,
    prefix: &'a str,
}

impl HostSql<'_> {
    /// Runs a cached statement that returns no rows; the rows changed.
    pub fn execute(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, DbError> {
        let mut stmt = self.conn.prepare_cached(&format!("{}{sql}", self.prefix))?;
        Ok(stmt.execute(params)?)
    }

    /// Runs a cached statement without parameters; each row through `f`.
    pub fn query_rows<T>(
        &self,
        sql: &str,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, DbError> {
        let mut stmt = self.conn.prepare_cached(&format!("{}{sql}", self.prefix))?;
        let rows = stmt.query_map([], f)?;
        Ok(rows.collect::<Result<Vec<T>, _>>()?)
    }

    /// The rowid of the last insert.
    pub fn last_insert_rowid(&self) -> i64 {
        self.conn.last_insert_rowid()
    }
}

/// A migration that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("migration #{index} failed: {error}")]
pub struct MigrationError {
    /// Its position (1-based) in the component's list.
    pub index: usize,
    /// Why.
    pub error: DbError,
}

/// Locks `m`, even if a thread panicked while holding it: what these
/// mutexes guard (a connection, a list of waiters, an order of events)
/// stays usable.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A checkpoint that never waits for writers or readers; it copies what
/// it can.
const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// `wal_checkpoint`'s row: busy, frames in the WAL, frames copied. `None`
/// when another checkpoint was running (the frame counts are -1 then).
fn checkpoint_result(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<(usize, usize)>> {
    let (busy, log, copied) = (
        r.get::<_, i64>(0)?,
        r.get::<_, i64>(1)?,
        r.get::<_, i64>(2)?,
    );
    match (usize::try_from(log), usize::try_from(copied)) {
        (Ok(log), Ok(copied)) if busy == 0 => Ok(Some((log, copied))),
        _ => Ok(None),
    }
}

/// The checkpoint thread: copies the WAL into the database file every
/// [`CHECKPOINT_EVERY`], and when woken (the writer saw a long WAL) until
/// little is left, so that the writer's own catch-up is short.
fn start_checkpointer(
    path: &Path,
    copied_to: Arc<AtomicUsize>,
    checkpointing: Arc<std::sync::Mutex<()>>,
) -> Result<std::sync::mpsc::SyncSender<()>, DbError> {
    let conn = Connection::open(path)?;
    let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
    let name = format!(
        "weft-ckpt-{}",
        path.file_stem().and_then(|s| s.to_str()).unwrap_or("db")
    );
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            use std::sync::mpsc::RecvTimeoutError;
            while let Ok(()) | Err(RecvTimeoutError::Timeout) = woken.recv_timeout(CHECKPOINT_EVERY)
            {
                let mut copied_before = 0;
                let checkpoint = || {
                    let _one_at_a_time = lock(&checkpointing);
                    conn.query_row(CHECKPOINT, [], checkpoint_result)
                };
                while let Ok(Some((log, copied))) = checkpoint() {
                    copied_to.store(copied, Ordering::Relaxed);
                    if log.saturating_sub(copied) <= CATCH_UP_TAIL || copied <= copied_before {
                        break;
                    }
                    copied_before = copied;
                }
            }
        })
        .map_err(|e| DbError::Unavailable(format!("cannot start checkpoint thread: {e}")))?;
    Ok(wake)
}

fn migrate(w: &mut Worker, statements: &[String], time: Duration) -> Result<usize, MigrationError> {
    let at = |index| move |error: DbError| MigrationError { index, error };
    let applied: i64 = w
        .as_host(|c| {
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS _weft_migrations (
                     version INTEGER PRIMARY KEY,
                     applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));
                 BEGIN IMMEDIATE;",
            )?;
            c.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM _weft_migrations",
                [],
                |r| r.get(0),
            )
        })
        .map_err(|e| at(0)(e.into()))?;
    let skip = usize::try_from(applied).unwrap_or(0);
    let mut ran = 0;
    for (i, sql) in statements.iter().enumerate().skip(skip) {
        let index = i + 1;
        w.watch.arm(Instant::now() + time);
        let ran_sql = w.conn.execute_batch(sql);
        w.watch.disarm();
        let step = ran_sql.map_err(DbError::from).and_then(|()| {
            w.as_host(|c| {
                c.execute(
                    "INSERT INTO _weft_migrations(version) VALUES (?1)",
                    [index as i64],
                )
            })
            .map_err(DbError::from)
        });
        if let Err(e) = step {
            let _ = w.as_host(|c| c.execute_batch("ROLLBACK"));
            return Err(at(index)(e));
        }
        ran += 1;
    }
    w.as_host(|c| c.execute_batch("COMMIT"))
        .map_err(|e| at(0)(e.into()))?;
    Ok(ran)
}

/// One invocation's transaction. Dropping it unfinished rolls back.
///
/// Either a member of the connection's group transaction that holds the
/// writer lease (`SAVEPOINT weft_member` … its commit, see the module
/// docs), or a savepoint inside a [`Batch`] that holds it (`SAVEPOINT` …
/// `RELEASE`): the group commit of event deliveries.
pub struct Tx {
    db: Database,
    /// When its guest statements must stop.
    deadline: Option<Instant>,
    /// `Some` for a member until it ends.
    lease: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// A savepoint inside a batch that has not ended yet.
    savepoint_open: bool,
}

/// Whether a member that nobody queues behind lets other tasks run before
/// it commits, so that they may join its group.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gather {
    YieldOnce,
    No,
}

/// The bound of a guest statement run without an invocation's deadline
/// (tests and tools): long, but not forever.
const UNBOUNDED_STATEMENT: Duration = Duration::from_secs(3600);

/// What a statement hears once SQLite rolled its transaction back.
fn rolled_back() -> DbError {
    DbError::Unavailable(
        "SQLite rolled the transaction back (a statement was interrupted or the database is full)"
            .into(),
    )
}

/// The savepoint of a member of the group transaction.
const MEMBER: &str = "weft_member";
/// The savepoint of the invocation running inside a batch (one at a time).
const SAVEPOINT: &str = "weft_invocation";

impl Tx {
    /// Stops this transaction's statements at `deadline` (the invocation's).
    pub fn with_deadline(mut self, deadline: Instant) -> Tx {
        self.deadline = Some(deadline);
        self
    }

    /// Runs a guest statement `f` under the deadline, inside the
    /// transaction. An interrupted write, or `SQLITE_FULL` without a
    /// statement journal, makes SQLite roll back the whole transaction: the
    /// group's other members then hear so at once, and nothing more runs
    /// in what would now be autocommit mode.
    async fn guest<R>(&self, f: impl FnOnce(&Worker) -> Result<R, DbError>) -> Result<R, DbError> {
        let deadline = self
            .deadline
            .unwrap_or_else(|| Instant::now() + UNBOUNDED_STATEMENT);
        let result = self
            .db
            .call(move |w| {
                if w.conn.is_autocommit() {
                    return Err(rolled_back());
                }
                w.watch.arm(deadline);
                let r = f(w);
                w.watch.disarm();
                r
            })
            .await?;
        if result.is_err() && !self.db.in_transaction() {
            self.db.tell_group(Err(rolled_back()));
        }
        result
    }

    /// Runs a statement that returns no rows; the number of rows changed.
    pub async fn execute(&self, sql: String, params: Vec<Value>) -> Result<u64, DbError> {
        self.guest(move |w| {
            let mut stmt = w.conn.prepare_cached(&sql)?;
            if stmt.readonly() && stmt.column_count() > 0 {
                return Err(DbError::Invalid(
                    "execute is for statements without rows; use query".into(),
                ));
            }
            if !stmt.readonly() {
                w.check_room()?;
            }
            let n = stmt.execute(rusqlite::params_from_iter(params.iter()))?;
            Ok(n as u64)
        })
        .await
    }

    /// Runs a statement that returns rows.
    pub async fn query(&self, sql: String, params: Vec<Value>) -> Result<Rows, DbError> {
        self.guest(move |w| {
            let mut stmt = w.conn.prepare_cached(&sql)?;
            if !stmt.readonly() {
                w.check_room()?;
            }
            collect_rows(&mut stmt, &params)
        })
        .await
    }

    /// Runs host statements in this transaction (the outbox and inbox rows
    /// that commit with the invocation's writes); refused once SQLite has
    /// rolled the transaction back, so they never commit on their own.
    pub(crate) fn host<R>(
        &self,
        f: impl FnOnce(&HostSql<'_>) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        self.db.run(|w| {
            if w.conn.is_autocommit() {
                return Err(rolled_back());
            }
            w.host(f)
        })
    }

    /// Commits (or releases the savepoint into its batch). A member that
    /// others wait behind leaves the `COMMIT` to the group (see the module
    /// docs); either way this returns once its writes are committed.
    pub async fn commit(self) -> Result<(), DbError> {
        self.end(Gather::YieldOnce).await
    }

    async fn end(mut self, gather: Gather) -> Result<(), DbError> {
        if self.savepoint_open {
            self.db.host_sql(&format!("RELEASE {SAVEPOINT}"))?;
            self.savepoint_open = false;
            return Ok(());
        }
        self.db.host_sql(&format!("RELEASE {MEMBER}"))?;
        let Some(lease) = self.lease.take() else {
            return Ok(());
        };
        let db = self.db.clone();
        let (told, mut outcome) = tokio::sync::oneshot::channel();
        let members = {
            let mut group = db.group();
            group.pending.push(told);
            group.pending.len()
        };
        // Whoever leaves from here on unfinished (its future dropped) makes
        // sure the group is committed anyway.
        let mut closer = Closer {
            db: db.clone(),
            armed: true,
        };
        if gather == Gather::YieldOnce
            && db.inner.waiting.load(Ordering::SeqCst) == 0
            && members < MAX_GROUP
        {
            // Nobody queues for the lease yet, but invocations that are
            // about to may be runnable on this worker: let them run once so
            // they join this commit. Over NATS, where requests arrive spread
            // out, this took groups from 1.9 to 5.7 members and
            // `workflows.create` up 9 % (BENCHMARKS.md).
            tokio::task::yield_now().await;
        }
        if db.inner.waiting.load(Ordering::SeqCst) == 0 || members >= MAX_GROUP {
            closer.armed = false;
            db.close_group();
            drop(lease);
            return outcome_of(outcome.await);
        }
        drop(lease);
        // Queued for the lease again: if the group is still open by the
        // time this member gets it, this member commits it.
        let lease = tokio::select! {
            biased;
            told = &mut outcome => {
                closer.armed = false;
                return outcome_of(told);
            }
            lease = db.acquire() => lease,
        };
        closer.armed = false;
        if let Ok(told) = outcome.try_recv() {
            return told; // committed while this member queued
        }
        db.close_group();
        drop(lease);
        outcome_of(outcome.await)
    }
}

fn outcome_of(
    told: Result<Result<(), DbError>, tokio::sync::oneshot::error::RecvError>,
) -> Result<(), DbError> {
    told.unwrap_or_else(|_| {
        Err(DbError::Unavailable(
            "the group commit was abandoned".into(),
        ))
    })
}

/// A member waiting for its group's commit whose caller went away (its
/// future dropped): someone must still commit what it released.
struct Closer {
    db: Database,
    armed: bool,
}

impl Drop for Closer {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let db = self.db.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _lease = db.acquire().await;
                if db.in_transaction() {
                    db.close_group();
                }
            });
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        // Runs before the lease is released, so before the next BEGIN.
        if self.savepoint_open {
            self.db.undo_savepoint(SAVEPOINT);
        } else if self.lease.is_some() {
            self.db.undo_savepoint(MEMBER);
            self.db.abandon();
        }
    }
}

/// A transaction that holds the writer lease for several invocations, each
/// in its own savepoint ([`Batch::savepoint`]); one commit makes them all
/// durable. Dropping it unfinished rolls back everything.
pub struct Batch {
    tx: Tx,
}

impl Batch {
    /// A savepoint for the next invocation. Only one may be open at a time:
    /// the caller runs the batch's invocations one after another.
    pub fn savepoint(&self) -> Result<Tx, DbError> {
        self.tx.db.open_savepoint()
    }

    /// Runs host statements in the batch's transaction, outside any
    /// savepoint.
    pub(crate) fn host<R>(
        &self,
        f: impl FnOnce(&HostSql<'_>) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        self.tx.host(f)
    }

    /// Commits every released savepoint. A batch is a group already: it
    /// does not wait for others to join.
    pub async fn commit(self) -> Result<(), DbError> {
        self.tx.end(Gather::No).await
    }
}

fn collect_rows(stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<Rows, DbError> {
    let columns: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
    let n = columns.len();
    let mut out = Rows {
        columns,
        rows: Vec::new(),
    };
    let mut bytes = 0usize;
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    while let Some(row) = rows.next()? {
        if out.rows.len() == MAX_ROWS {
            return Err(DbError::LimitExceeded(format!(
                "more than {MAX_ROWS} rows; add a LIMIT"
            )));
        }
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            let v: Value = row.get(i)?;
            bytes += match &v {
                Value::Text(s) => s.len(),
                Value::Blob(b) => b.len(),
                _ => 8,
            };
            values.push(v);
        }
        if bytes > MAX_RESULT_BYTES {
            return Err(DbError::LimitExceeded(format!(
                "result larger than {MAX_RESULT_BYTES} bytes; add a LIMIT"
            )));
        }
        out.rows.push(values);
    }
    Ok(out)
}

/// Tables guests may not touch at all: the host's, and `sqlite_sequence`,
/// whose rows number the host's outbox (`AUTOINCREMENT`).
fn is_host_table(name: &str) -> bool {
    let prefixed = name.len() >= HOST_TABLE_PREFIX.len()
        && name[..HOST_TABLE_PREFIX.len()].eq_ignore_ascii_case(HOST_TABLE_PREFIX);
    prefixed || name.eq_ignore_ascii_case("sqlite_sequence")
}

/// SQL functions guests may not call: loading code into the host, and
/// FTS3's tokenizer registration, which takes a raw pointer.
fn is_denied_function(name: &str) -> bool {
    ["load_extension", "fts3_tokenizer"]
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
}

fn guest_authorization(ctx: &AuthContext<'_>) -> Authorization {
    use AuthAction as A;
    match ctx.action {
        A::Attach { .. }
        | A::Detach { .. }
        | A::Pragma { .. }
        | A::Transaction { .. }
        | A::Savepoint { .. }
        | A::CreateVtable { .. }
        | A::DropVtable { .. } => Authorization::Deny,
        A::Function { function_name } if is_denied_function(function_name) => Authorization::Deny,
        // Triggers and views are checked too: SQLite authorises the
        // statements a trigger runs and the tables a view reads each time
        // a guest statement uses them, with the trigger or view as accessor.
        A::CreateIndex { table_name, .. }
        | A::CreateTable { table_name }
        | A::CreateTempIndex { table_name, .. }
        | A::CreateTempTable { table_name }
        | A::CreateTempTrigger { table_name, .. }
        | A::CreateTrigger { table_name, .. }
        | A::Delete { table_name }
        | A::DropIndex { table_name, .. }
        | A::DropTable { table_name }
        | A::DropTempIndex { table_name, .. }
        | A::DropTempTable { table_name }
        | A::DropTempTrigger { table_name, .. }
        | A::DropTrigger { table_name, .. }
        | A::Insert { table_name }
        | A::Read { table_name, .. }
        | A::Update { table_name, .. }
        | A::AlterTable { table_name, .. }
        | A::Analyze { table_name }
            if is_host_table(table_name) =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATION_TIME: Duration = Duration::from_secs(60);

    fn open() -> Result<(tempfile::TempDir, Database), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = Database::open(&dir.path().join("t.sqlite"), Synchronous::Normal)?;
        Ok((dir, db))
    }

    /// [`open`], with the table `t(x INTEGER)`.
    async fn open_with_t() -> Result<(tempfile::TempDir, Database), Box<dyn std::error::Error>> {
        let (dir, db) = open()?;
        db.migrate(vec!["CREATE TABLE t(x INTEGER)".into()], MIGRATION_TIME)
            .await?;
        Ok((dir, db))
    }

    #[tokio::test]
    async fn commit_keeps_and_drop_rolls_back() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        let tx = db.begin().await?;
        tx.execute("INSERT INTO t VALUES (?1)".into(), vec![Value::Integer(1)])
            .await?;
        tx.commit().await?;
        let tx = db.begin().await?;
        tx.execute("INSERT INTO t VALUES (2)".into(), vec![])
            .await?;
        drop(tx);
        let tx = db.begin().await?;
        let rows = tx.query("SELECT x FROM t".into(), vec![]).await?;
        assert_eq!(rows.rows, vec![vec![Value::Integer(1)]]);
        Ok(())
    }

    /// A writer that never pauses never lets the checkpoint thread finish,
    /// so without the writer's catch-up SQLite never starts the WAL over
    /// and it grows with everything written (here ~40,000 frames).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_a_writer_that_never_pauses(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (dir, db) = open()?;
        db.migrate(vec!["CREATE TABLE t(x BLOB)".into()], MIGRATION_TIME)
            .await?;
        let writers = (0..4).map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..2_000 {
                    let tx = db.begin().await?;
                    for _ in 0..5 {
                        // Most of a 4 KiB page per row.
                        tx.execute("INSERT INTO t VALUES (randomblob(3000))".into(), vec![])
                            .await?;
                    }
                    tx.commit().await?;
                }
                Ok::<_, DbError>(())
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await??;
        }
        let rows =
            db.read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))?;
        assert_eq!(rows, 40_000);
        let frame = 4096 + 24;
        let wal = std::fs::metadata(dir.path().join("t.sqlite-wal"))?.len() as usize;
        // The last catch-up can come a few commits late.
        let most = (CATCH_UP_ANYWAY_FRAMES + 2 * CATCH_UP_TAIL) * frame;
        assert!(
            wal <= most,
            "WAL of {wal} bytes ({} frames), at most {most} expected",
            wal / frame
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_batch_keeps_released_savepoints_and_drops_rolled_back_ones(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        let batch = db.begin_batch().await?;
        for x in 1..=3 {
            let sp = batch.savepoint()?;
            sp.execute("INSERT INTO t VALUES (?1)".into(), vec![Value::Integer(x)])
                .await?;
            if x == 2 {
                drop(sp); // this invocation failed
            } else {
                sp.commit().await?;
            }
        }
        batch.commit().await?;
        let tx = db.begin().await?;
        let rows = tx
            .query("SELECT x FROM t ORDER BY x".into(), vec![])
            .await?;
        assert_eq!(
            rows.rows,
            vec![vec![Value::Integer(1)], vec![Value::Integer(3)]]
        );
        drop(tx);
        // A batch dropped before its commit keeps nothing.
        let batch = db.begin_batch().await?;
        let sp = batch.savepoint()?;
        sp.execute("INSERT INTO t VALUES (9)".into(), vec![])
            .await?;
        sp.commit().await?;
        drop(batch);
        let rows = db.host_query("SELECT count(*) FROM t").await?;
        assert_eq!(rows.rows, vec![vec![Value::Integer(2)]]);
        Ok(())
    }

    /// Rows of `t` that a reader outside every transaction sees.
    fn committed_rows(db: &Database) -> Result<i64, DbError> {
        db.read(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
    }

    /// Member A inserts 1 and commits while B waits for the lease: A hands
    /// the lease (and its uncommitted work) on to B and waits for the
    /// group's commit. Returns A's commit, still running, and B.
    async fn a_commits_while_b_waits(
        db: &Database,
    ) -> Result<(tokio::task::JoinHandle<Result<(), DbError>>, Tx), Box<dyn std::error::Error>>
    {
        let a = db.begin().await?;
        a.execute("INSERT INTO t VALUES (1)".into(), vec![]).await?;
        let waiter = db.clone();
        let b = tokio::spawn(async move { waiter.begin().await });
        while db.inner.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let a_done = tokio::spawn(a.commit());
        Ok((a_done, b.await??))
    }

    #[tokio::test]
    async fn a_member_that_others_wait_behind_hears_committed_only_after_the_groups_commit(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        let (a_done, b) = a_commits_while_b_waits(&db).await?;
        assert_eq!(committed_rows(&db)?, 0, "A's row is not committed yet");
        assert!(
            !a_done.is_finished(),
            "A must not hear committed before the COMMIT"
        );
        // B sees A's row: one transaction, serial order.
        let seen = b.query("SELECT count(*) FROM t".into(), vec![]).await?;
        assert_eq!(seen.rows, vec![vec![Value::Integer(1)]]);
        b.execute("INSERT INTO t VALUES (2)".into(), vec![]).await?;
        b.commit().await?;
        a_done.await??;
        assert_eq!(committed_rows(&db)?, 2);
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_member_rolls_back_alone_and_the_group_still_commits(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        let (a_done, b) = a_commits_while_b_waits(&db).await?;
        b.execute("INSERT INTO t VALUES (2)".into(), vec![]).await?;
        drop(b); // B failed: its row goes, A's stays and commits
        a_done.await??;
        let rows = db.read(|c| {
            c.query_row("SELECT group_concat(x) FROM t", [], |r| {
                r.get::<_, String>(0)
            })
        })?;
        assert_eq!(rows, "1");
        Ok(())
    }

    /// B: a task, runnable but not started, that inserts 2 and commits.
    fn spawn_b(db: &Database) -> tokio::task::JoinHandle<Result<(), DbError>> {
        let db = db.clone();
        tokio::spawn(async move {
            let b = db.begin().await?;
            b.execute("INSERT INTO t VALUES (2)".into(), vec![]).await?;
            b.commit().await
        })
    }

    /// B is runnable but has not asked for the lease when A commits.
    async fn a_commits_while_b_is_about_to_begin(
        db: &Database,
    ) -> Result<(u64, tokio::task::JoinHandle<Result<(), DbError>>, Tx), Box<dyn std::error::Error>>
    {
        let a = db.begin().await?;
        a.execute("INSERT INTO t VALUES (1)".into(), vec![]).await?;
        let before = db.commits();
        Ok((before, spawn_b(db), a))
    }

    #[tokio::test]
    async fn a_member_that_nobody_waits_for_lets_a_runnable_one_join_its_commit(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        let (before, b, a) = a_commits_while_b_is_about_to_begin(&db).await?;
        a.commit().await?;
        b.await??;
        assert_eq!(committed_rows(&db)?, 2);
        assert_eq!(db.commits() - before, 1, "A and B share one COMMIT");
        Ok(())
    }

    #[tokio::test]
    async fn a_batch_commits_without_waiting_for_others() -> Result<(), Box<dyn std::error::Error>>
    {
        let (_dir, db) = open_with_t().await?;
        let batch = db.begin_batch().await?;
        let member = batch.savepoint()?;
        member
            .execute("INSERT INTO t VALUES (1)".into(), vec![])
            .await?;
        member.commit().await?;
        let before = db.commits();
        let b = spawn_b(&db);
        batch.commit().await?;
        assert_eq!(db.commits() - before, 1);
        assert_eq!(committed_rows(&db)?, 1, "B had not begun");
        b.await??;
        assert_eq!(committed_rows(&db)?, 2);
        assert_eq!(db.commits() - before, 2, "B commits on its own");
        Ok(())
    }

    #[tokio::test]
    async fn a_member_dropped_while_others_may_join_is_still_committed(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        let a = db.begin().await?;
        a.execute("INSERT INTO t VALUES (1)".into(), vec![]).await?;
        let mut commit = Box::pin(a.commit());
        // The first poll stops at the yield that lets others join.
        assert!(futures::poll!(commit.as_mut()).is_pending());
        drop(commit);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while committed_rows(&db)? != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "A's row never committed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // And the lease is free again.
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), db.begin()).await??;
        next.commit().await?;
        Ok(())
    }

    #[tokio::test]
    async fn a_member_whose_caller_went_away_is_still_committed(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        let (a_done, b) = a_commits_while_b_waits(&db).await?;
        a_done.abort(); // A's caller is gone while A waits for the group
        let _ = a_done.await;
        drop(b); // and B, the last holder of the lease, fails
        for _ in 0..200 {
            if committed_rows(&db)? == 1 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Err("A's released work was never committed".into())
    }

    #[tokio::test]
    async fn an_outbox_from_before_traces_gains_the_column_and_keeps_its_rows(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("old.sqlite");
        Connection::open(&path)?.execute_batch(
            "CREATE TABLE _weft_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL);
             INSERT INTO _weft_outbox (event) VALUES ('{}');",
        )?;
        let db = Database::open(&path, Synchronous::Normal)?;
        let rows = db
            .host_query("SELECT event, trace FROM _weft_outbox")
            .await?;
        assert_eq!(rows.rows, vec![vec![Value::Text("{}".into()), Value::Null]]);
        Ok(())
    }

    #[tokio::test]
    async fn migrations_run_once_and_a_failure_names_its_index(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open()?;
        let first = vec!["CREATE TABLE a(x)".to_string()];
        assert_eq!(db.migrate(first.clone(), MIGRATION_TIME).await?, 1);
        assert_eq!(db.migrate(first.clone(), MIGRATION_TIME).await?, 0);
        let mut more = first;
        more.push("CREATE TABLE b(x)".into());
        more.push("THIS IS NOT SQL".into());
        let err = db.migrate(more, MIGRATION_TIME).await.err();
        assert_eq!(err.map(|e| e.index), Some(3));
        // The failed batch left nothing behind: b does not exist.
        let rows = db
            .host_query("SELECT name FROM sqlite_master WHERE name = 'b'")
            .await?;
        assert!(rows.rows.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn guests_cannot_reach_host_tables_or_escape() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open()?;
        db.migrate(vec!["CREATE TABLE t(x UNIQUE)".into()], MIGRATION_TIME)
            .await?;
        let tx = db.begin().await?;
        for sql in [
            "SELECT * FROM _weft_migrations",
            "DELETE FROM _WEFT_migrations",
            "ATTACH DATABASE '/tmp/x.db' AS x",
            "PRAGMA journal_mode = DELETE",
            "COMMIT",
        ] {
            let r = tx.execute(sql.into(), vec![]).await;
            assert!(matches!(r, Err(DbError::Denied(_))), "{sql}: {r:?}");
        }
        tx.execute("INSERT INTO t VALUES (1)".into(), vec![])
            .await?;
        let dup = tx.execute("INSERT INTO t VALUES (1)".into(), vec![]).await;
        assert!(matches!(dup, Err(DbError::Conflict(_))), "{dup:?}");
        let bad = tx
            .execute("INSERT INTO nope VALUES (1)".into(), vec![])
            .await;
        assert!(matches!(bad, Err(DbError::Invalid(_))), "{bad:?}");
        Ok(())
    }

    const COUNT_FOREVER: &str =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

    #[tokio::test]
    async fn a_guest_statement_stops_at_its_deadline() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        let deadline = Instant::now() + Duration::from_millis(200);
        let tx = db.begin().await?.with_deadline(deadline);
        let r = tx.query(COUNT_FOREVER.into(), vec![]).await;
        assert_eq!(r, Err(DbError::Timeout));
        let late = Instant::now().saturating_duration_since(deadline);
        assert!(late < Duration::from_millis(50), "stopped {late:?} late");
        // A read that was stopped leaves the transaction usable.
        tx.execute("INSERT INTO t VALUES (1)".into(), vec![])
            .await?;
        tx.commit().await?;
        assert_eq!(committed_rows(&db)?, 1);
        Ok(())
    }

    /// One worker thread: a statement that kept it would stop every other
    /// task until its deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_long_statement_leaves_its_worker_to_other_tasks(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        let (ticking_tx, ticking) = tokio::sync::oneshot::channel();
        let ticker = tokio::spawn(async move {
            let mut ticking_tx = Some(ticking_tx);
            let mut worst = Duration::ZERO;
            for _ in 0..60 {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                worst = worst.max(t.elapsed());
                if let Some(tx) = ticking_tx.take() {
                    let _ = tx.send(());
                }
            }
            worst
        });
        let query = tokio::spawn(async move {
            let _ = ticking.await;
            let tx = db
                .begin()
                .await?
                .with_deadline(Instant::now() + Duration::from_millis(400));
            tx.query(COUNT_FOREVER.into(), vec![]).await
        });
        let worst = ticker.await?;
        assert_eq!(query.await?, Err(DbError::Timeout));
        assert!(
            worst < Duration::from_millis(100),
            "a 10 ms sleep took {worst:?} beside the statement"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_value_past_the_bound_is_refused_before_it_is_made(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        db.bound(GuestBounds {
            max_value_bytes: 1 << 20,
            max_db_bytes: 1 << 30,
        })?;
        let tx = db.begin().await?;
        for sql in [
            "SELECT randomblob(1000000000)",
            "SELECT zeroblob(2000000)",
            "SELECT printf('%.*c', 2000000, 'x')",
        ] {
            let r = tx.query(sql.into(), vec![]).await;
            assert!(matches!(r, Err(DbError::LimitExceeded(_))), "{sql}: {r:?}");
        }
        let ok = tx
            .query("SELECT length(randomblob(1000))".into(), vec![])
            .await?;
        assert_eq!(ok.rows, vec![vec![Value::Integer(1000)]]);
        Ok(())
    }

    #[tokio::test]
    async fn a_full_database_is_a_limit_and_the_next_transaction_works(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        db.bound(GuestBounds {
            max_value_bytes: 1 << 20,
            max_db_bytes: 256 << 10,
        })?;
        let tx = db.begin().await?;
        let mut full = None;
        for _ in 0..200 {
            if let Err(e) = tx
                .execute("INSERT INTO t VALUES (randomblob(8000))".into(), vec![])
                .await
            {
                full = Some(e);
                break;
            }
        }
        assert!(matches!(full, Some(DbError::LimitExceeded(_))), "{full:?}");
        drop(tx);
        let tx = db.begin().await?;
        tx.execute("INSERT INTO t VALUES (1)".into(), vec![])
            .await?;
        tx.commit().await?;
        assert_eq!(committed_rows(&db)?, 1);
        Ok(())
    }

    /// B's write is stopped at its deadline while A's released work waits
    /// in the group: SQLite rolls the whole transaction back, so A must
    /// hear a failure (not "committed"), and B's later statements must not
    /// run in autocommit mode.
    #[tokio::test]
    async fn an_interrupted_write_fails_its_group_and_commits_nothing_alone(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open_with_t().await?;
        let (a_done, b) = a_commits_while_b_waits(&db).await?;
        let b = b.with_deadline(Instant::now() + Duration::from_millis(100));
        let long_write = "INSERT INTO t WITH RECURSIVE c(x) AS \
             (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";
        assert_eq!(
            b.execute(long_write.into(), vec![]).await,
            Err(DbError::Timeout)
        );
        let after = b.execute("INSERT INTO t VALUES (3)".into(), vec![]).await;
        assert!(matches!(after, Err(DbError::Unavailable(_))), "{after:?}");
        assert!(b.commit().await.is_err());
        assert!(a_done.await?.is_err(), "A's work was rolled back");
        assert_eq!(committed_rows(&db)?, 0);
        Ok(())
    }

    #[tokio::test]
    async fn guests_cannot_reach_host_tables_through_sequences_triggers_or_views(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, db) = open()?;
        db.migrate(
            vec![
                "CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT, x)".into(),
                "CREATE TABLE log(x)".into(),
            ],
            MIGRATION_TIME,
        )
        .await?;
        let tx = db.begin().await?;
        tx.execute("INSERT INTO a(x) VALUES (1)".into(), vec![])
            .await?;
        for sql in [
            "UPDATE sqlite_sequence SET seq = 0",
            "DELETE FROM sqlite_sequence",
            "INSERT INTO sqlite_sequence VALUES ('_weft_outbox', 0)",
            "CREATE TRIGGER t1 AFTER INSERT ON _weft_outbox BEGIN SELECT 1; END",
            "SELECT fts3_tokenizer('simple')",
        ] {
            let r = tx.execute(sql.into(), vec![]).await;
            assert!(matches!(r, Err(DbError::Denied(_))), "{sql}: {r:?}");
        }
        // The schema table: CREATE, DROP and ALTER write it on a guest's
        // behalf, so the authorizer lets them; a direct write SQLite itself
        // refuses, as `writable_schema` is a (denied) pragma.
        for sql in [
            "UPDATE sqlite_master SET sql = 'x'",
            "DELETE FROM sqlite_schema",
            "PRAGMA writable_schema = ON",
        ] {
            let r = tx.execute(sql.into(), vec![]).await;
            assert!(
                matches!(r, Err(DbError::Denied(_) | DbError::Invalid(_))),
                "{sql}: {r:?}"
            );
        }
        let read = tx
            .query("SELECT * FROM sqlite_sequence".into(), vec![])
            .await;
        assert!(matches!(read, Err(DbError::Denied(_))), "{read:?}");
        // A trigger or view may be made, but what it reaches is checked
        // whenever a guest statement uses it.
        for sql in [
            "CREATE TRIGGER bump AFTER INSERT ON log BEGIN \
                 UPDATE sqlite_sequence SET seq = 0; END",
            "CREATE TRIGGER leak AFTER INSERT ON a BEGIN \
                 INSERT INTO _weft_outbox(event) VALUES ('{}'); END",
            "CREATE VIEW peek AS SELECT * FROM _weft_outbox",
        ] {
            // Creating may be refused already; using must be.
            let _ = tx.execute(sql.into(), vec![]).await;
        }
        for sql in ["INSERT INTO log VALUES (1)", "INSERT INTO a(x) VALUES (2)"] {
            let r = tx.execute(sql.into(), vec![]).await;
            assert!(matches!(r, Err(DbError::Denied(_)) | Ok(_)), "{sql}: {r:?}");
        }
        let peek = tx.query("SELECT * FROM peek".into(), vec![]).await;
        assert!(
            matches!(peek, Err(DbError::Denied(_) | DbError::Invalid(_))),
            "{peek:?}"
        );
        // The guest's own schema still works.
        tx.execute("CREATE TABLE b(y)".into(), vec![]).await?;
        tx.execute("DROP TABLE b".into(), vec![]).await?;
        tx.commit().await?;
        let outbox = db.host_query("SELECT count(*) FROM _weft_outbox").await?;
        assert_eq!(outbox.rows, vec![vec![Value::Integer(0)]]);
        let seq = db
            .host_query("SELECT seq FROM sqlite_sequence WHERE name = 'a'")
            .await?;
        assert_eq!(
            seq.rows,
            vec![vec![Value::Integer(1)]],
            "only a's own insert"
        );
        Ok(())
    }
}
