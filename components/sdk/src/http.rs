//! HTTP helpers: JSON responses in the contract's shape and request parsing.
//!
//! Handlers can return `Result<Response, Response>`: `?` turns a bad body
//! ([`parse_json`]) or a failed host call (`From<Error> for Response`) into
//! the error response.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{log, Caller, Error, Request, Response};

const JSON: &str = "application/json";

/// A list endpoint's `limit` when the query gives none.
pub const DEFAULT_LIMIT: i64 = 100;
/// The largest `limit` a list endpoint accepts.
pub const MAX_LIMIT: i64 = 1000;

/// A response with `body` serialised as JSON.
pub fn json(status: u16, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response {
            status,
            headers: vec![("content-type".into(), JSON.into())],
            body: bytes,
        },
        Err(err) => internal(format!("cannot serialise a response body: {err}")),
    }
}

/// The contract's error response: `{"error":{"code":..,"message":..}}`.
pub fn error(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// 204 No Content.
pub fn no_content() -> Response {
    Response {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// 400 `validation_failed` with a message naming what is wrong.
pub fn validation_failed(message: &str) -> Response {
    error(400, "validation_failed", message)
}

/// 404 `not_found` for a path the component does not serve.
pub fn not_found() -> Response {
    error(404, "not_found", "no such resource")
}

/// 404 `not_found` with a message naming what is missing.
pub fn not_found_because(message: &str) -> Response {
    error(404, "not_found", message)
}

/// 429 `too_many_requests` with `Retry-After: <retry_after_secs>`.
pub fn too_many_requests(retry_after_secs: u32) -> Response {
    let mut response = error(
        429,
        "too_many_requests",
        &format!("too many attempts; try again in {retry_after_secs} s"),
    );
    response
        .headers
        .push(("retry-after".into(), retry_after_secs.to_string()));
    response
}

/// 401 `unauthorized` with `message`.
pub fn unauthorized(message: &str) -> Response {
    error(401, "unauthorized", message)
}

/// 409 `conflict` with `message`.
pub fn conflict(message: &str) -> Response {
    error(409, "conflict", message)
}

/// The verified caller of `request`, or 401 `unauthorized` when the request
/// carried no bearer token (the gateway has already rejected bad ones).
pub fn require_caller(request: &Request) -> Result<&Caller, Response> {
    request.caller.as_ref().ok_or_else(|| {
        unauthorized("this route needs a bearer token (Authorization: Bearer <token>)")
    })
}

/// Whether `caller` holds `role` (such as `admin`).
pub fn has_role(caller: &Caller, role: &str) -> bool {
    caller.has_role(role)
}

/// 405 `method_not_allowed`, with an `allow` header listing `allowed`.
pub fn method_not_allowed(allowed: &[&str]) -> Response {
    let allow = allowed.join(", ");
    let mut response = error(
        405,
        "method_not_allowed",
        &format!("method not allowed here; use {allow}"),
    );
    response.headers.push(("allow".into(), allow));
    response
}

/// 500 `internal`: logs `detail` and answers without leaking it.
pub fn internal(detail: impl Display) -> Response {
    log::error(&format!("internal error: {detail}"));
    error(500, "internal", "internal error")
}

/// A failed host call as a response: `conflict` → 409, `not-found` → 404,
/// `denied` → 403, `timeout`/`no-responder`/`unavailable` → 503
/// `upstream_unavailable`; anything else is a 500 (logged, not leaked).
impl From<Error> for Response {
    fn from(err: Error) -> Response {
        match err {
            Error::Conflict(message) => error(409, "conflict", &message),
            Error::NotFound(message) => error(404, "not_found", &message),
            Error::Denied(message) => {
                log::warn(&format!("denied by the host: {message}"));
                error(403, "forbidden", "forbidden")
            }
            Error::Timeout | Error::NoResponder | Error::Unavailable(_) => {
                log::warn(&format!("upstream unavailable: {err}"));
                error(
                    503,
                    "upstream_unavailable",
                    "a service this needs is unavailable; try again later",
                )
            }
            Error::Invalid(_) | Error::Remote(_) | Error::LimitExceeded(_) => internal(err),
        }
    }
}

/// A failed host call after the invocation has written something: always a
/// 5xx (`From<Error>`'s when it is one, else 500 `internal`), so that the
/// host rolls the writes back instead of committing half of them (a 4xx
/// commits).
pub fn rollback(err: Error) -> Response {
    let response = Response::from(err.clone());
    if response.status >= 500 {
        response
    } else {
        internal(format!("after writing: {err}"))
    }
}

/// Parses the request body as JSON into `T`. A body that is not valid JSON
/// or does not fit `T` gives a 400 `validation_failed` whose message names
/// the offending field.
pub fn parse_json<T: DeserializeOwned>(request: &Request) -> Result<T, Response> {
    // serde would fill a struct from a JSON array field by field.
    if request.body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(validation_failed("the request body must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&request.body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            validation_failed(&format!("invalid request body: {inner}"))
        } else {
            validation_failed(&format!("invalid request body: `{path}`: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|err| validation_failed(&format!("invalid request body: {err}")))?;
    Ok(value)
}

/// The value of header `name` (compared case-insensitively), if present.
pub fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Parses a query string (`a=1&b=x%20y`) into a map, percent-decoding keys
/// and values (`+` is a space). When a key repeats, the first value wins.
pub fn query_params(query: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        params
            .entry(percent_decode(key))
            .or_insert_with(|| percent_decode(value));
    }
    params
}

/// Decodes `%XX` escapes and `+` (a space). A malformed escape is kept as
/// it is; bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|pair| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                });
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A list endpoint's `limit` from its query parameters: absent or empty is
/// [`DEFAULT_LIMIT`]; otherwise an integer from 1 to [`MAX_LIMIT`], else 400
/// `validation_failed`.
pub fn limit(params: &BTreeMap<String, String>) -> Result<i64, Response> {
    parse_limit(params.get("limit").map(String::as_str))
        .map_err(|message| validation_failed(&message))
}

/// [`limit`]'s rule on the raw value, with the message on failure.
pub fn parse_limit(value: Option<&str>) -> Result<i64, String> {
    match value.filter(|text| !text.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| format!("limit must be an integer from 1 to {MAX_LIMIT}")),
    }
}

/// The non-empty segments of a path: `/accounts/42/` → `["accounts", "42"]`,
/// for routes such as `("GET", ["accounts", id])`.
pub fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::{json, Value};

    fn body(response: &Response) -> Value {
        serde_json::from_slice(&response.body).expect("a JSON body")
    }

    fn request(body: &str) -> Request {
        Request {
            method: "POST".into(),
            path: "/x".into(),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            caller: None,
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        #[allow(dead_code)]
        age: Option<u32>,
    }

    #[test]
    fn json_sets_status_type_and_body() {
        let response = json(201, &json!({"id": "a"}));
        assert_eq!(response.status, 201);
        assert_eq!(
            response.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        assert_eq!(body(&response), json!({"id": "a"}));
    }

    #[test]
    fn error_has_the_contract_shape() {
        let response = error(409, "conflict", "username taken");
        assert_eq!(response.status, 409);
        assert_eq!(
            std::str::from_utf8(&response.body).expect("utf-8"),
            r#"{"error":{"code":"conflict","message":"username taken"}}"#
        );
    }

    #[test]
    fn method_not_allowed_lists_methods() {
        let response = method_not_allowed(&["GET", "POST"]);
        assert_eq!(response.status, 405);
        assert!(response
            .headers
            .contains(&("allow".to_string(), "GET, POST".to_string())));
        assert_eq!(body(&response)["error"]["code"], "method_not_allowed");
    }

    #[test]
    fn no_content_is_empty() {
        let response = no_content();
        assert_eq!(response.status, 204);
        assert!(response.body.is_empty());
    }

    #[test]
    fn host_errors_map_to_statuses() {
        let conflict = Response::from(Error::Conflict("taken".into()));
        assert_eq!(conflict.status, 409);
        assert_eq!(body(&conflict)["error"]["code"], "conflict");
        assert_eq!(Response::from(Error::NotFound("x".into())).status, 404);
        assert_eq!(Response::from(Error::Timeout).status, 503);
        let internal = Response::from(Error::Invalid("near \"SELEC\": syntax error".into()));
        assert_eq!(internal.status, 500);
        assert_eq!(
            body(&internal),
            json!({"error": {"code": "internal", "message": "internal error"}})
        );
    }

    #[test]
    fn rollback_is_always_a_server_error() {
        assert_eq!(rollback(Error::Conflict("dup".into())).status, 500);
        assert_eq!(rollback(Error::Denied("no".into())).status, 500);
        assert_eq!(rollback(Error::NotFound("gone".into())).status, 500);
        assert_eq!(rollback(Error::Unavailable("busy".into())).status, 503);
        assert_eq!(rollback(Error::Invalid("bad".into())).status, 500);
    }

    #[test]
    fn parse_json_accepts_a_fitting_body() {
        let sample: Sample = parse_json(&request(r#"{"name":"ada","age":36}"#)).expect("parses");
        assert_eq!(sample.name, "ada");
    }

    fn rejection(text: &str) -> String {
        let response = parse_json::<Sample>(&request(text)).expect_err("rejected");
        assert_eq!(response.status, 400);
        let body = body(&response);
        assert_eq!(body["error"]["code"], "validation_failed");
        body["error"]["message"]
            .as_str()
            .expect("a message")
            .to_string()
    }

    #[test]
    fn parse_json_names_the_field() {
        assert!(rejection(r#"{"name": 5}"#).contains("`name`"));
        assert!(rejection(r#"{"age": 3}"#).contains("missing field `name`"));
        assert!(rejection(r#"{"name":"a","nmae":"b"}"#).contains("unknown field `nmae`"));
        assert!(rejection("").contains("JSON object"));
        assert!(rejection("{not json").contains("invalid request body"));
        assert!(rejection(r#"{"name":"a"} trailing"#).contains("trailing"));
    }

    #[test]
    fn header_lookup_ignores_case() {
        let request = request("{}");
        assert_eq!(header(&request, "Content-Type"), Some("application/json"));
        assert_eq!(header(&request, "accept"), None);
    }

    #[test]
    fn query_params_decode() {
        let params = query_params("a=1&b=x%20y+z&a=2&flag&e=&%C3%A9=%E2%82%AC&bad=%zz%4");
        assert_eq!(params["a"], "1");
        assert_eq!(params["b"], "x y z");
        assert_eq!(params["flag"], "");
        assert_eq!(params["e"], "");
        assert_eq!(params["é"], "€");
        assert_eq!(params["bad"], "%zz%4");
        assert!(query_params("").is_empty());
    }

    #[test]
    fn percent_decode_is_lossy_on_bad_utf8() {
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }

    #[test]
    fn callers_are_required() {
        let mut anonymous = request("{}");
        let response = require_caller(&anonymous).expect_err("no caller");
        assert_eq!(response.status, 401);
        assert_eq!(body(&response)["error"]["code"], "unauthorized");

        anonymous.caller = Some(Caller {
            user_id: "u1".into(),
            org_id: "o1".into(),
            roles: vec!["user".into()],
        });
        let caller = require_caller(&anonymous).expect("a caller");
        assert_eq!(caller.user_id, "u1");
        assert!(has_role(caller, "user"));
        assert!(!has_role(caller, "admin"));
    }

    #[test]
    fn small_error_helpers() {
        let response = conflict("taken");
        assert_eq!(response.status, 409);
        assert_eq!(body(&response)["error"]["code"], "conflict");
        let response = not_found_because("no such account");
        assert_eq!(response.status, 404);
        assert_eq!(body(&response)["error"]["message"], "no such account");
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None), Ok(100));
        assert_eq!(parse_limit(Some("")), Ok(100));
        assert_eq!(parse_limit(Some("1")), Ok(1));
        assert_eq!(parse_limit(Some("1000")), Ok(1000));
        for bad in [
            "0",
            "1001",
            "-1",
            "ten",
            "1.5",
            " 5",
            "99999999999999999999",
        ] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad:?}");
        }
        let params = query_params("limit=abc");
        let response = limit(&params).expect_err("bad");
        assert_eq!(response.status, 400);
        assert_eq!(body(&response)["error"]["code"], "validation_failed");
        assert_eq!(limit(&query_params("limit=7")).expect("ok"), 7);
    }

    #[test]
    fn segments_split_paths() {
        assert_eq!(segments("/accounts/42/"), vec!["accounts", "42"]);
        assert!(segments("/").is_empty());
    }
}
