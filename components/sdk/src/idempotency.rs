//! `Idempotency-Key` for POST routes: the same key (per caller) with the
//! same request replays the first response — status and body, 4xx included —
//! without running the handler again; the same key with another request is
//! 409 `conflict`.
//!
//! Responses under 500 are recorded (a 5xx rolls the invocation back, the
//! record with it, so a retry runs afresh). Records are kept for
//! [`KEEP_SECS`], then purged. The host runs one invocation at a time per
//! database (`BEGIN IMMEDIATE`), so a lookup and the insert that follows
//! cannot interleave with another request's.
//!
//! The component's migrations must create the table:
//!
//! ```sql
//! CREATE TABLE idempotency_keys (
//!     user_id TEXT NOT NULL,
//!     key TEXT NOT NULL,
//!     request_hash TEXT NOT NULL,
//!     status INTEGER NOT NULL,
//!     response_body BLOB NOT NULL,
//!     created_at TEXT NOT NULL,
//!     PRIMARY KEY (user_id, key)
//! );
//! CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
//! ```
//!
//! ```no_run
//! use weft_sdk::{http, idempotency, Request, Response};
//!
//! fn post(request: &Request) -> Result<Response, Response> {
//!     let caller = http::require_caller(request)?;
//!     Ok(idempotency::with_key(request, caller, || {
//!         http::json(201, &serde_json::json!({"done": true}))
//!     }))
//! }
//! ```

use blake2::{Blake2b256, Digest};
use serde_json::{Map, Value as Json};

use crate::db::{self, Value};
use crate::{format_rfc3339, http, log, now_unix, Caller, Error, Request, Response};

/// The request header carrying the key (names arrive lower-case).
pub const HEADER: &str = "idempotency-key";
/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;
/// How long a key is remembered: 7 days (the contract asks for ≥ 24 h).
pub const KEEP_SECS: i64 = 7 * 86_400;
/// Set on a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Runs `handle` under `request`'s `Idempotency-Key`, if it has one (else
/// just runs it). See the module docs.
pub fn with_key(request: &Request, caller: &Caller, handle: impl FnOnce() -> Response) -> Response {
    let Some(key) = http::header(request, HEADER) else {
        return handle();
    };
    if let Err(message) = validate_key(key) {
        return http::validation_failed(&message);
    }
    let hash = fingerprint(&request.method, &request.path, &request.body);
    match lookup(&caller.user_id, key) {
        Err(err) => return fail(err),
        Ok(Some(stored)) => return decide(&stored, &hash),
        Ok(None) => {}
    }
    let response = handle();
    if response.status >= 500 {
        return response;
    }
    match record(&caller.user_id, key, &hash, &response) {
        Ok(()) => response,
        Err(err) => fail(err),
    }
}

/// A stored first response.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub request_hash: String,
    pub status: u16,
    pub body: Vec<u8>,
}

/// A key is 1 to [`MAX_KEY_LEN`] bytes of printable ASCII (a UUID, say).
pub fn validate_key(key: &str) -> Result<(), String> {
    if !key.trim().is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.bytes().all(|b| (0x20..=0x7e).contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "the Idempotency-Key header must be 1 to {MAX_KEY_LEN} printable ASCII characters"
        ))
    }
}

/// A hex digest of the request: its method, path and body. A JSON body is
/// canonicalised first (object keys sorted, whitespace dropped), so two
/// bodies with the same JSON value are the same request; any other body is
/// taken byte for byte.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let body = match serde_json::from_slice::<Json>(body) {
        Ok(value) => serde_json::to_vec(&canonical(value)).unwrap_or_else(|_| body.to_vec()),
        Err(_) => body.to_vec(),
    };
    let mut hasher = Blake2b256::new();
    hasher.update(method.as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(&body);
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The hex Blake2b-256 digest of `bytes`: for storing a secret (an
/// invitation or refresh code) as something that cannot be used.
pub fn digest_hex(bytes: &[u8]) -> String {
    Blake2b256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// What a repeated key gets: the stored response when the request is the
/// same, 409 `conflict` when it is not.
pub fn decide(stored: &Stored, request_hash: &str) -> Response {
    if stored.request_hash != request_hash {
        return http::conflict(
            "this Idempotency-Key was already used with a different request; use a new key",
        );
    }
    let mut headers = Vec::new();
    if !stored.body.is_empty() {
        headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    headers.push((REPLAYED_HEADER.to_string(), "true".to_string()));
    Response {
        status: stored.status,
        headers,
        body: stored.body.clone(),
    }
}

/// `value` with every object's keys in sorted order, whatever map type
/// serde_json was built with.
fn canonical(value: Json) -> Json {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(String, Json)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, canonical(value)))
                    .collect::<Map<String, Json>>(),
            )
        }
        Json::Array(items) => Json::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// A failed host call around the record: always a 5xx, so that the
/// invocation (and whatever `handle` wrote) rolls back.
fn fail(err: Error) -> Response {
    http::rollback(err)
}

fn lookup(user_id: &str, key: &str) -> Result<Option<Stored>, Error> {
    let cutoff = format_rfc3339(now_unix().saturating_sub(KEEP_SECS));
    let purged = db::execute(
        "DELETE FROM idempotency_keys WHERE created_at < ?1",
        &[cutoff.into()],
    )?;
    if purged > 0 {
        log::debug(&format!("purged {purged} expired idempotency keys"));
    }
    let rows = db::query(
        "SELECT request_hash, status, response_body FROM idempotency_keys
         WHERE user_id = ?1 AND key = ?2",
        &[user_id.into(), key.into()],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let status = u16::try_from(row.int("status")?)
        .map_err(|_| Error::Invalid("a stored idempotent status is out of range".into()))?;
    let body = match row.get("response_body")? {
        Value::Blob(bytes) => bytes.clone(),
        Value::Text(text) => text.clone().into_bytes(),
        _ => {
            return Err(Error::Invalid(
                "a stored idempotent body is not bytes".into(),
            ))
        }
    };
    Ok(Some(Stored {
        request_hash: row.text("request_hash")?,
        status,
        body,
    }))
}

fn record(user_id: &str, key: &str, hash: &str, response: &Response) -> Result<(), Error> {
    db::execute(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, status, response_body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            user_id.into(),
            key.into(),
            hash.into(),
            Value::from(u32::from(response.status)),
            Value::from(response.body.clone()),
            crate::now_rfc3339().into(),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("3f1c2a9e-0b7d-4e55-9a0c-1d2e3f4a5b6c").is_ok());
        assert!(validate_key("a").is_ok());
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        for bad in ["", "   ", "é", "a\tb", "a\nb"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn fingerprints_ignore_json_layout_only() {
        let a = fingerprint("POST", "/transactions", br#"{"a":1,"b":{"y":2,"x":[1,2]}}"#);
        let b = fingerprint(
            "POST",
            "/transactions",
            b"{ \"b\": {\"x\": [1, 2], \"y\": 2},\n \"a\": 1 }",
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        for other in [
            fingerprint("POST", "/transactions", br#"{"a":2,"b":{"y":2,"x":[1,2]}}"#),
            fingerprint("POST", "/transactions", br#"{"a":1,"b":{"y":2,"x":[2,1]}}"#),
            fingerprint(
                "POST",
                "/transactions",
                br#"{"a":1.0,"b":{"y":2,"x":[1,2]}}"#,
            ),
            fingerprint("POST", "/other", br#"{"a":1,"b":{"y":2,"x":[1,2]}}"#),
            fingerprint("PUT", "/transactions", br#"{"a":1,"b":{"y":2,"x":[1,2]}}"#),
        ] {
            assert_ne!(a, other);
        }
        // Not JSON: byte for byte.
        assert_eq!(
            fingerprint("POST", "/t", b"{x"),
            fingerprint("POST", "/t", b"{x")
        );
        assert_ne!(
            fingerprint("POST", "/t", b"{x"),
            fingerprint("POST", "/t", b"{x ")
        );
    }

    #[test]
    fn same_request_replays_other_conflicts() {
        let stored = Stored {
            request_hash: "h1".into(),
            status: 422,
            body: br#"{"error":{"code":"insufficient_funds","message":"m"}}"#.to_vec(),
        };
        let replay = decide(&stored, "h1");
        assert_eq!(replay.status, 422);
        assert_eq!(replay.body, stored.body);
        assert!(replay
            .headers
            .contains(&("content-type".to_string(), "application/json".to_string())));
        assert!(replay
            .headers
            .contains(&(REPLAYED_HEADER.to_string(), "true".to_string())));

        let conflict = decide(&stored, "h2");
        assert_eq!(conflict.status, 409);
        let body: Json = serde_json::from_slice(&conflict.body).expect("JSON");
        assert_eq!(body["error"]["code"], "conflict");

        let empty = decide(
            &Stored {
                request_hash: "h".into(),
                status: 204,
                body: Vec::new(),
            },
            "h",
        );
        assert_eq!(empty.status, 204);
        assert_eq!(empty.headers.len(), 1);
    }

    #[test]
    fn storage_failures_always_roll_back() {
        assert_eq!(fail(Error::Conflict("dup".into())).status, 500);
        assert_eq!(fail(Error::Unavailable("busy".into())).status, 503);
    }
}
