//! Faulty: a component that misbehaves on request, for the host's
//! integration tests. Table `notes(id, body)`.
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
//! - `GET /echo` → 200 the request as seen: `{"method", "path", "query",
//!   "headers": {name: value}, "body": text, "caller": {..} or null}` (a
//!   repeated header keeps its last value)
//!
//! Events: `faulty.poison` → `invalid` error; `faulty.trap` → traps; any
//! other → stores a note whose body is the event type.
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
use weft_sdk::db::{self, Value};
use weft_sdk::{config, events, http, messaging, Error, Event, Guest, Request, Response};

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

struct Faulty;

impl Guest for Faulty {
    fn migrations() -> Vec<String> {
        let mut migrations = vec!["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)".into()];
        if version().ends_with(":X") {
            // The broken build: its second migration cannot apply.
            migrations.push("CREATE TABLE notes (id INTEGER)".into());
        }
        migrations
    }

    fn on_event(event: Event) -> Result<(), Error> {
        match event.event_type.as_str() {
            "faulty.poison" => Err(Error::Invalid("poison event".into())),
            "faulty.trap" => panic!("faulty: trap requested by event {}", event.id),
            other => insert(other).map(|_| ()),
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
        _ => Ok(http::not_found()),
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
