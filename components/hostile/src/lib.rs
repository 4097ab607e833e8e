//! Hostile: a component that misbehaves on purpose, for the host's sandbox
//! tests. Table `things(id, body)`.
//!
//! Routes (below its prefix):
//! - `GET /ok` → 200 `{"ok":true}`
//! - `GET /trap` → traps (a panic)
//! - `GET /loop` → spins forever
//! - `GET /memory-bomb` → allocates and writes 1 MiB blocks, keeping them
//!   all, until the host stops it; never answers
//! - `GET /grow?mib=N` → allocates and writes N MiB, then 200
//!   `{"allocated_mib": N}` (400 without a numeric `mib`)
//! - `GET /recurse` → recurses (1 KiB frames) until the stack overflows
//! - `GET /recurse?depth=N` → recurses N deep, then 200
//!   `{"depth": N, "sum": N(N+1)/2}` (wrapping; 400 when `depth` is not a
//!   number). Wasm's default 1 MiB stack holds about 800 levels; deeper
//!   traps.
//! - `POST /publish` `{"eventType", "data": any JSON}` → publishes `data` as
//!   JSON text, 201 `{"id": id}`
//! - `POST /request` `{"subject", "payload": text, "timeoutMs"}` →
//!   request-reply, 200 `{"reply": text}`
//! - `POST /issue-token` → a token for user `u1`, org `o1`, roles
//!   `["admin"]`: 200 `{"accessToken", "tokenType", "expiresIn"}`
//! - `POST /push` `{"userId", "message": any JSON}` → pushes `message` as
//!   JSON text, 204
//! - `POST /sql` `{"sql", "query": bool (default false)}` → runs it without
//!   parameters (a query if `query`), 200 `{"rows": rows returned or
//!   changed}`
//! - `GET /fuzz?seed=S&calls=N` → N (default 200) calls to the host's
//!   imports with arguments drawn from a generator seeded with S (see
//!   [`fuzz`]), 200 `{"calls": N, "ok": k, "errors": {variant: count}}`
//!   (400 without a numeric `seed`, or with a non-numeric `calls`)
//! - anything else → 404
//!
//! A failed host call answers `{"error": {"code", "message"}}` with the
//! message `"<variant>: <detail>"` (the WIT's kebab-case variant name) and
//! the status of [`status_and_code`]. A bad request body is 400
//! `validation_failed`.
//!
//! Events: `hostile.trap` → traps; any other → stores a thing whose body is
//! the event type.
//!
//! Messages: any subject → answers the payload unchanged.
//!
//! Timers: do nothing.

pub mod fuzz;

use std::collections::BTreeMap;
use std::hint::black_box;

use serde::Deserialize;
use serde_json::{json, Value as Json};
use weft_sdk::bindings::weft::service::messaging as raw_messaging;
use weft_sdk::db::{self, Value};
use weft_sdk::{auth, http, messaging, realtime, Error, Event, Guest, Request, Response};

/// `GET /fuzz`'s number of calls when the query gives none.
const DEFAULT_FUZZ_CALLS: u64 = 200;

/// One mebibyte, the unit `/grow` and `/memory-bomb` allocate in.
const MIB: usize = 1024 * 1024;

struct Hostile;

impl Guest for Hostile {
    fn migrations() -> Vec<String> {
        vec!["CREATE TABLE things (id INTEGER PRIMARY KEY, body TEXT)".into()]
    }

    fn on_event(event: Event) -> Result<(), Error> {
        if event.event_type == "hostile.trap" {
            panic!("hostile: trap requested by event {}", event.id);
        }
        db::execute(
            "INSERT INTO things (body) VALUES (?1)",
            &[Value::from(event.event_type)],
        )
        .map(drop)
    }

    fn on_request(request: Request) -> Response {
        route(&request).unwrap_or_else(|response| response)
    }

    fn on_message(_subject: String, payload: String) -> Result<String, Error> {
        Ok(payload)
    }

    fn on_timer(_name: String) -> Result<(), Error> {
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublishBody {
    event_type: String,
    data: Json,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestBody {
    subject: String,
    payload: String,
    timeout_ms: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushBody {
    user_id: String,
    message: Json,
}

#[derive(Deserialize)]
struct SqlBody {
    sql: String,
    #[serde(default)]
    query: bool,
    /// A query on committed data, without the writer lease.
    #[serde(default)]
    committed: bool,
}

fn route(request: &Request) -> Result<Response, Response> {
    let params = http::query_params(&request.query);
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/ok") => Ok(http::json(200, &json!({"ok": true}))),
        ("GET", "/trap") => panic!("hostile: trap requested"),
        ("GET", "/loop") => spin(),
        ("GET", "/memory-bomb") => memory_bomb(),
        ("GET", "/grow") => {
            let mib = required(&params, "mib")?;
            black_box(allocate(mib));
            Ok(http::json(200, &json!({"allocated_mib": mib})))
        }
        ("GET", "/recurse") => {
            let depth = number(&params, "depth")?.unwrap_or(u64::MAX);
            let sum = recurse(depth);
            Ok(http::json(200, &json!({"depth": depth, "sum": sum})))
        }
        ("POST", "/publish") => {
            let body: PublishBody = http::parse_json(request)?;
            // The raw import: the SDK's `events::publish` would serialise a
            // Rust value, and this route passes the caller's JSON through.
            let id = raw_messaging::publish(&body.event_type, &body.data.to_string())
                .map_err(failure)?;
            Ok(http::json(201, &json!({"id": id})))
        }
        ("POST", "/request") => {
            let body: RequestBody = http::parse_json(request)?;
            let reply = messaging::request(&body.subject, &body.payload, body.timeout_ms)
                .map_err(failure)?;
            Ok(http::json(200, &json!({"reply": reply})))
        }
        ("POST", "/issue-token") => {
            // Roles from the body (any JSON object; default `admin`).
            let roles: Vec<String> = serde_json::from_slice::<serde_json::Value>(&request.body)
                .ok()
                .and_then(|body| serde_json::from_value(body["roles"].clone()).ok())
                .unwrap_or_else(|| vec!["admin".to_string()]);
            let token = auth::issue_token("u1", "o1", &roles).map_err(failure)?;
            Ok(http::json(200, &auth::TokenResponse::from(&token)))
        }
        ("POST", "/push") => {
            let body: PushBody = http::parse_json(request)?;
            realtime::push_text(&body.user_id, &body.message.to_string()).map_err(failure)?;
            Ok(http::no_content())
        }
        ("POST", "/sql") => {
            let body: SqlBody = http::parse_json(request)?;
            let rows = if body.committed {
                db::query_committed(&body.sql, &[]).map(|rows| rows.len() as u64)
            } else if body.query {
                db::query(&body.sql, &[]).map(|rows| rows.len() as u64)
            } else {
                db::execute(&body.sql, &[])
            }
            .map_err(failure)?;
            Ok(http::json(200, &json!({"rows": rows})))
        }
        ("GET", "/fuzz") => {
            let seed = required(&params, "seed")?;
            let calls = number(&params, "calls")?.unwrap_or(DEFAULT_FUZZ_CALLS);
            Ok(http::json(200, &fuzz::run(seed, calls)))
        }
        _ => Ok(http::not_found()),
    }
}

/// Query parameter `name` as a number: `None` when absent, 400 when it is
/// not a number.
fn number(params: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, Response> {
    params
        .get(name)
        .map(|text| {
            text.parse().map_err(|_| {
                http::validation_failed(&format!("query parameter `{name}` must be a number"))
            })
        })
        .transpose()
}

/// [`number`], 400 when absent too.
fn required(params: &BTreeMap<String, String>, name: &str) -> Result<u64, Response> {
    number(params, name)?
        .ok_or_else(|| http::validation_failed(&format!("query parameter `{name}` is required")))
}

/// The WIT's name for the variant of `err`.
pub fn variant(err: &Error) -> &'static str {
    match err {
        Error::Invalid(_) => "invalid",
        Error::Conflict(_) => "conflict",
        Error::NotFound(_) => "not-found",
        Error::Denied(_) => "denied",
        Error::Timeout => "timeout",
        Error::NoResponder => "no-responder",
        Error::Remote(_) => "remote",
        Error::LimitExceeded(_) => "limit-exceeded",
        Error::Unavailable(_) => "unavailable",
    }
}

/// The status and error code a failed host call answers with.
pub fn status_and_code(err: &Error) -> (u16, &'static str) {
    match err {
        Error::Denied(_) => (403, "forbidden"),
        Error::LimitExceeded(_) => (413, "payload_too_large"),
        Error::Invalid(_) => (400, "validation_failed"),
        Error::Conflict(_) => (409, "conflict"),
        Error::NotFound(_) => (404, "not_found"),
        Error::Timeout | Error::NoResponder | Error::Unavailable(_) | Error::Remote(_) => {
            (503, "upstream_unavailable")
        }
    }
}

/// A failed host call as a response. Not the SDK's `From<Error>`: that one
/// hides `invalid` and `limit-exceeded` as 500 and drops `denied`'s message,
/// and the tests need to see which error the host gave.
pub fn failure(err: Error) -> Response {
    let (status, code) = status_and_code(&err);
    let detail = match &err {
        Error::Invalid(message)
        | Error::Conflict(message)
        | Error::NotFound(message)
        | Error::Denied(message)
        | Error::Remote(message)
        | Error::LimitExceeded(message)
        | Error::Unavailable(message) => message.as_str(),
        Error::Timeout => "no answer in time",
        Error::NoResponder => "nobody serves the subject",
    };
    http::error(status, code, &format!("{}: {detail}", variant(&err)))
}

/// Busy forever; `black_box` keeps the optimiser from reasoning it away.
fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = black_box(turns.wrapping_add(1));
    }
}

/// One MiB, every byte written. Not zero: fresh wasm memory is already
/// zeroed, so a zeroed allocation might never touch its pages.
fn block() -> Vec<u8> {
    vec![0xA5; MIB]
}

/// `mib` blocks, all kept.
fn allocate(mib: u64) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    for _ in 0..mib {
        blocks.push(block());
    }
    blocks
}

fn memory_bomb() -> ! {
    let mut blocks = Vec::new();
    loop {
        blocks.push(block());
        black_box(&blocks);
    }
}

/// 1 + 2 + … + `depth` (wrapping), one 1 KiB stack frame per level. The
/// frame goes through `black_box` and is read after the call, and so is the
/// call's result, so that the recursion can become neither a loop nor a
/// smaller frame.
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    let frame = black_box([depth; 128]);
    let below = black_box(recurse(depth - 1));
    below.wrapping_add(frame[black_box(0)])
}

weft_sdk::export!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, query: &str) -> Response {
        let request = Request {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            headers: Vec::new(),
            body: Vec::new(),
            caller: None,
        };
        route(&request).unwrap_or_else(|response| response)
    }

    fn body(response: &Response) -> Json {
        serde_json::from_slice(&response.body).expect("a JSON body")
    }

    #[test]
    fn errors_map_to_statuses_and_codes() {
        let cases = [
            (Error::Denied("d".into()), 403, "forbidden", "denied"),
            (
                Error::LimitExceeded("l".into()),
                413,
                "payload_too_large",
                "limit-exceeded",
            ),
            (
                Error::Invalid("i".into()),
                400,
                "validation_failed",
                "invalid",
            ),
            (Error::Conflict("c".into()), 409, "conflict", "conflict"),
            (Error::NotFound("n".into()), 404, "not_found", "not-found"),
            (Error::Timeout, 503, "upstream_unavailable", "timeout"),
            (
                Error::NoResponder,
                503,
                "upstream_unavailable",
                "no-responder",
            ),
            (
                Error::Remote("r".into()),
                503,
                "upstream_unavailable",
                "remote",
            ),
            (
                Error::Unavailable("u".into()),
                503,
                "upstream_unavailable",
                "unavailable",
            ),
        ];
        for (err, status, code, name) in cases {
            assert_eq!(status_and_code(&err), (status, code));
            assert_eq!(variant(&err), name);
            let response = failure(err);
            assert_eq!(response.status, status);
            let body = body(&response);
            assert_eq!(body["error"]["code"], code);
            let message = body["error"]["message"].as_str().expect("a message");
            assert!(message.starts_with(&format!("{name}: ")), "{message}");
        }
        let body = body(&failure(Error::Denied("no push grant".into())));
        assert_eq!(body["error"]["message"], "denied: no push grant");
    }

    #[test]
    fn recursion_sums_its_depths() {
        assert_eq!(recurse(0), 0);
        assert_eq!(recurse(10), 55);
        // Not much deeper: unoptimised frames are several KiB each.
        assert_eq!(recurse(200), 20_100);
    }

    #[test]
    fn allocations_are_written() {
        let blocks = allocate(2);
        assert_eq!(blocks.len(), 2);
        assert!(blocks
            .iter()
            .all(|block| block.len() == MIB && block.iter().all(|&byte| byte == 0xA5)));
    }

    #[test]
    fn pure_routes() {
        assert_eq!(body(&get("/ok", "")), json!({"ok": true}));
        assert_eq!(body(&get("/grow", "mib=1")), json!({"allocated_mib": 1}));
        assert_eq!(
            body(&get("/recurse", "depth=100")),
            json!({"depth": 100, "sum": 5050})
        );
        for (path, query) in [
            ("/grow", ""),
            ("/grow", "mib=lots"),
            ("/grow", "mib=-1"),
            ("/recurse", "depth=deep"),
            ("/fuzz", ""),
            ("/fuzz", "seed=1&calls=x"),
        ] {
            let response = get(path, query);
            assert_eq!(response.status, 400, "{path}?{query}");
            assert_eq!(body(&response)["error"]["code"], "validation_failed");
        }
        assert_eq!(get("/nope", "").status, 404);
        assert_eq!(get("/publish", "").status, 404);
    }
}
