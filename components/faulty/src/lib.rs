//! Faulty: a component that misbehaves on request, for the host's
//! integration tests and the crash test (`just crash-test`). Tables
//! `notes(id, body)` and `seen(event_id, event_type, correlation_id, data)`
//! (the second migration; `seen` has no unique key, so that a duplicate
//! delivery shows as a second row).
//!
//! Routes (below its prefix):
//! - `GET /ok` → 200 `{"ok":true}`
//! - `GET /version` → 200 `{"version": "weft-test-version:1"}` (see
//!   [`VERSION`])
//! - `GET /trap` → traps (a panic)
//! - `GET /loop` → spins forever (for epoch deadlines)
//! - `POST /note` → stores the request body (as text) as a note, emits
//!   `faulty.noted` `{"note": body}`, 201 `{"id": id}`
//! - `POST /note-then-trap` → stores and emits as `/note`, then traps
//! - `POST /note-then-500` → stores and emits as `/note`, then answers 500
//! - `GET /notes` → 200 `[{"id", "body"}]`, in id order
//! - `GET /config?key=K` → 200 `{"value": config K or null, "instance": id}`
//!   (400 without `key`)
//! - `POST /emit?type=T&n=N` → publishes N events of type T (data
//!   `{"i": k}`) in one invocation, 201 `{"published": N}` (benchmarks)
//! - `GET /echo` → 200 the request as seen: `{"method", "path", "query",
//!   "headers": {name: value}, "body": text, "caller": {..} or null}` (a
//!   repeated header keeps its last value)
//!
//! Events:
//! - `faulty.poison` → `invalid` error, unless a note whose body is exactly
//!   `cure` exists (`POST /note` with body `cure`): then handled as any
//!   other;
//! - `faulty.trap` → traps;
//! - `faulty.slow` → logs `slow event <id>` (info), busy-waits config
//!   `slow_ms` milliseconds (default 1000; for kills mid-invocation), then
//!   handled as any other;
//! - any other → stores a note whose body is the event type and, with
//!   config `record_events` = `"true"`, a `seen` row with the event's id,
//!   type, correlation id and data (the crash test counts deliveries by
//!   it).
//!
//! Messages: with config `stall` = `"true"`, spins forever (for request
//! timeouts); subject `faulty.relay` → requests `faulty.echo` with the same
//! payload (1000 ms) and answers its reply (an error fails the message);
//! any other subject → answers `{"subject", "payload", "instance"}` as JSON
//! text.
//!
//! Timers: any timer `name` → stores a note `timer:<name>:<instance id>`.

use serde::Serialize;
use serde_json::{json, Map, Value as Json};
use std::time::{Duration, Instant};
use weft_sdk::db::{self, Value};

use weft_sdk::{config, events, http, log, messaging, Error, Event, Guest, Request, Response};

/// Which build of faulty this is. Hot-swap tests patch these bytes in the
/// built `.wasm` to make a second version (`…:2`) that answers differently,
/// or one whose migrations fail (`…:X`), without building the crate twice.
/// Read through `black_box` so that the text stays in the data section and
/// is compared at run time.
pub const VERSION: &str = "weft-test-version:1";

fn version() -> &'static str {
    std::hint::black_box(VERSION)
}

/// How long `faulty.relay` waits for `faulty.echo`.
const RELAY_TIMEOUT_MS: u32 = 1000;

/// How long `faulty.slow` busy-waits without config `slow_ms`.
const DEFAULT_SLOW_MS: u64 = 1000;

/// Only ever append: the host remembers how many have run. The broken
/// build (`…:X`) appends one more that cannot apply.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
    // Deliberately no UNIQUE key: a redelivered event is a second row.
    "CREATE TABLE seen (
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        correlation_id TEXT,
        data TEXT
    )",
];

struct Faulty;

impl Guest for Faulty {
    fn migrations() -> Vec<String> {
        let mut migrations: Vec<String> = MIGRATIONS.iter().map(|sql| sql.to_string()).collect();
        if version().ends_with(":X") {
            // The broken build: its last migration cannot apply.
            migrations.push("CREATE TABLE notes (id INTEGER)".into());
        }
        migrations
    }

    fn on_event(event: Event) -> Result<(), Error> {
        match event.event_type.as_str() {
            "faulty.poison" if !cured()? => Err(Error::Invalid("poison event".into())),
            "faulty.trap" => panic!("faulty: trap requested by event {}", event.id),
            "faulty.slow" => {
                log::info(&format!("slow event {}", event.id));
                busy_wait(Duration::from_millis(slow_ms(
                    config::get("slow_ms").as_deref(),
                )));
                handle(&event)
            }
            _ => handle(&event),
        }
    }

    fn on_request(request: Request) -> Response {
        route(&request).unwrap_or_else(|response| response)
    }

    fn on_message(subject: String, payload: String) -> Result<String, Error> {
        if config::get("stall").as_deref() == Some("true") {
            spin();
        }
        if subject == "faulty.relay" {
            return messaging::request("faulty.echo", &payload, RELAY_TIMEOUT_MS);
        }
        let reply = json!({
            "subject": subject,
            "payload": payload,
            "instance": config::instance_id(),
        });
        Ok(reply.to_string())
    }

    fn on_timer(name: String) -> Result<(), Error> {
        insert(&format!("timer:{name}:{}", config::instance_id())).map(|_| ())
    }
}

fn route(request: &Request) -> Result<Response, Response> {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/ok") => Ok(http::json(200, &json!({"ok": true}))),
        ("GET", "/version") => Ok(http::json(200, &json!({"version": version()}))),
        ("GET", "/trap") => panic!("faulty: trap requested"),
        ("GET", "/loop") => spin(),
        ("POST", "/note") => {
            let id = note(request)?;
            Ok(http::json(201, &json!({"id": id})))
        }
        ("POST", "/note-then-trap") => {
            note(request)?;
            panic!("faulty: trap after writing a note")
        }
        ("POST", "/note-then-500") => {
            note(request)?;
            Ok(http::error(500, "internal", "failed after writing a note"))
        }
        ("GET", "/notes") => notes(),
        ("GET", "/config") => Ok(config_value(request)),
        ("GET", "/echo") => Ok(echo(request)),
        ("POST", "/emit") => Ok(emit(request)?),
        _ => Ok(http::not_found()),
    }
}

/// The ordinary handling of an event: a note whose body is its type and,
/// with config `record_events` = `"true"`, a `seen` row.
fn handle(event: &Event) -> Result<(), Error> {
    insert(&event.event_type)?;
    if config::get("record_events").as_deref() == Some("true") {
        db::execute(
            "INSERT INTO seen (event_id, event_type, correlation_id, data)
             VALUES (?1, ?2, ?3, ?4)",
            &[
                Value::from(&event.id),
                Value::from(&event.event_type),
                Value::from(&event.correlation_id),
                Value::from(&event.data),
            ],
        )?;
    }
    Ok(())
}

/// Whether a note `cure` exists, which turns `faulty.poison` harmless.
fn cured() -> Result<bool, Error> {
    let rows = db::query(
        "SELECT 1 AS cured FROM notes WHERE body = 'cure' LIMIT 1",
        &[],
    )?;
    Ok(!rows.is_empty())
}

/// `faulty.slow`'s wait: config `slow_ms` when it is a whole number of
/// milliseconds, else [`DEFAULT_SLOW_MS`].
fn slow_ms(config: Option<&str>) -> u64 {
    config
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(DEFAULT_SLOW_MS)
}

/// Busy (not sleeping: a guest has no sleep that the host would not see as
/// idle) for `duration`, as a slow handler would be.
fn busy_wait(duration: Duration) {
    let started = Instant::now();
    let mut turns: u64 = 0;
    while started.elapsed() < duration {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
}

/// Busy forever; `black_box` keeps the optimiser from reasoning it away.
fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
}

/// Stores the request body as a note and emits `faulty.noted`.
fn note(request: &Request) -> Result<i64, Error> {
    let body = String::from_utf8_lossy(&request.body);
    let id = insert(&body)?;
    events::publish("faulty.noted", &json!({"note": body}))?;
    Ok(id)
}

/// Stores a note; returns its id.
fn insert(body: &str) -> Result<i64, Error> {
    let rows = db::query(
        "INSERT INTO notes (body) VALUES (?1) RETURNING id",
        &[Value::from(body)],
    )?;
    match rows.first() {
        Some(row) => row.int("id"),
        None => Err(Error::Invalid("INSERT … RETURNING gave no row".into())),
    }
}

#[derive(Serialize)]
struct Note {
    id: i64,
    body: Option<String>,
}

fn notes() -> Result<Response, Response> {
    let rows = db::query("SELECT id, body FROM notes ORDER BY id", &[])?;
    let notes = rows
        .iter()
        .map(|row| {
            Ok(Note {
                id: row.int("id")?,
                body: row.opt_text("body")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(http::json(200, &notes))
}

/// Publishes `n` events of `type` (data `{"i": k}`) in this one
/// invocation: for benchmarks of the outbox.
fn emit(request: &Request) -> Result<Response, Error> {
    let params = http::query_params(&request.query);
    let (Some(event_type), Some(n)) = (
        params.get("type"),
        params.get("n").and_then(|n| n.parse::<u32>().ok()),
    ) else {
        return Ok(http::validation_failed(
            "query parameters `type` and `n` (a count) are required",
        ));
    };
    for i in 0..n {
        events::publish(event_type, &json!({ "i": i }))?;
    }
    Ok(http::json(201, &json!({ "published": n })))
}

fn config_value(request: &Request) -> Response {
    let params = http::query_params(&request.query);
    let Some(key) = params.get("key") else {
        return http::validation_failed("query parameter `key` is required");
    };
    http::json(
        200,
        &json!({"value": config::get(key), "instance": config::instance_id()}),
    )
}

fn echo(request: &Request) -> Response {
    let headers: Map<String, Json> = request
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), Json::from(value.as_str())))
        .collect();
    let caller = request.caller.as_ref().map(
        |caller| json!({"userId": caller.user_id, "orgId": caller.org_id, "roles": caller.roles}),
    );
    http::json(
        200,
        &json!({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": headers,
            "body": String::from_utf8_lossy(&request.body),
            "caller": caller,
        }),
    )
}

weft_sdk::export!(Faulty);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_ms_falls_back_to_the_default() {
        assert_eq!(slow_ms(None), DEFAULT_SLOW_MS);
        assert_eq!(slow_ms(Some("250")), 250);
        assert_eq!(slow_ms(Some(" 5 ")), 5);
        assert_eq!(slow_ms(Some("soon")), DEFAULT_SLOW_MS);
        assert_eq!(slow_ms(Some("-3")), DEFAULT_SLOW_MS);
    }

    #[test]
    fn seen_is_the_second_migration_and_keeps_duplicates() {
        assert_eq!(MIGRATIONS.len(), 2);
        assert!(MIGRATIONS[1].contains("CREATE TABLE seen"));
        assert!(!MIGRATIONS[1].to_uppercase().contains("UNIQUE"));
        assert!(!MIGRATIONS[1].to_uppercase().contains("PRIMARY KEY"));
    }

    #[test]
    fn the_built_version_has_no_broken_migration() {
        assert_eq!(Faulty::migrations().len(), MIGRATIONS.len());
    }

    #[test]
    fn busy_wait_waits() {
        let started = Instant::now();
        busy_wait(Duration::from_millis(20));
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
