//! What bounding guest SQL costs: SQLite's progress handler, called every
//! 1000 virtual-machine steps, doing what the host's does (read the
//! deadline, read the clock, compare), against no handler, on the same
//! statements: a primary-key lookup (a typical guest statement) and a
//! 100k-row scan. Rounds alternate so both variants see the same machine.
//!
//! `cargo bench -p weft_host --bench sql_bounds`
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

const ROWS: i64 = 100_000;
const LOOKUPS: u32 = 20_000;
const SCANS: u32 = 10;
const ROUNDS: usize = 7;

fn open(dir: &std::path::Path, handler: bool) -> Connection {
    let mut conn = Connection::open(dir.join("bench.sqlite")).expect("open");
    conn.execute_batch("PRAGMA journal_mode = WAL;")
        .expect("wal");
    if handler {
        let base = Instant::now();
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let last = Arc::new(AtomicU64::new(0));
        conn.progress_handler(
            1000,
            Some(move || {
                let d = deadline.load(Ordering::Relaxed);
                let now = base.elapsed().as_nanos() as u64;
                let _ = last.load(Ordering::Relaxed);
                now >= d
            }),
        )
        .expect("handler");
    }
    conn
}

fn lookups(conn: &Connection) -> Duration {
    let mut stmt = conn
        .prepare_cached("SELECT id, body FROM t WHERE id = ?1")
        .expect("prepare");
    let started = Instant::now();
    for i in 0..LOOKUPS {
        let id = i64::from(i) % ROWS + 1;
        let body: String = stmt.query_row([id], |r| r.get(1)).expect("row");
        std::hint::black_box(body);
    }
    started.elapsed() / LOOKUPS
}

fn scans(conn: &Connection) -> Duration {
    let mut stmt = conn
        .prepare_cached("SELECT count(*) FROM t WHERE body LIKE '%7x%'")
        .expect("prepare");
    let started = Instant::now();
    for _ in 0..SCANS {
        let n: i64 = stmt.query_row([], |r| r.get(0)).expect("row");
        std::hint::black_box(n);
    }
    started.elapsed() / SCANS
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let conn = open(dir.path(), false);
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL);")
            .expect("table");
        let tx = conn.unchecked_transaction().expect("tx");
        for i in 1..=ROWS {
            tx.execute(
                "INSERT INTO t (body) VALUES (?1)",
                [format!("row {i} x{}", i * 7)],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let (plain, guarded) = (open(dir.path(), false), open(dir.path(), true));
    let mut results = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for _ in 0..ROUNDS {
        results[0].0.push(lookups(&plain));
        results[0].1.push(lookups(&guarded));
        results[1].0.push(scans(&plain));
        results[1].1.push(scans(&guarded));
    }
    println!("median of {ROUNDS} rounds (no handler / progress handler every 1000 steps)");
    for (name, (a, b)) in ["primary-key lookup", "100k-row LIKE scan"]
        .iter()
        .zip(results)
    {
        let (a, b) = (median(a), median(b));
        let extra = (b.as_secs_f64() / a.as_secs_f64() - 1.0) * 100.0;
        println!("{name:>20}: {a:>10.2?} / {b:>10.2?}  ({extra:+.1} %)");
    }
}
