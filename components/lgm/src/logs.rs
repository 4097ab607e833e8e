//! `GET /logs`: stored events by filter.
//!
//! Query `correlationId`, `eventType`, `source` (each optional, ANDed; an
//! empty value is no filter) and `limit` (1–1000, default 100). Answers the
//! newest `limit` matches, oldest first, as contract envelopes.
//!
//! Auth required: no caller → 401 `unauthorized`. A caller without role
//! `admin` sees only the events whose `data.userId` is their own; a caller
//! with it sees all (events without `data.userId` are for admins only).

use weft_sdk::db::{self, Value};
use weft_sdk::events::Envelope;
use weft_sdk::{http, Caller, Error, Request, Response};

/// What to select, from the query string and the caller.
#[derive(Debug, Default, PartialEq)]
struct Filter {
    correlation_id: Option<String>,
    event_type: Option<String>,
    source: Option<String>,
    /// Only this user's events; `None` for all.
    user_id: Option<String>,
    limit: i64,
}

pub fn handle(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let filter =
        filter(&request.query, caller).map_err(|message| http::validation_failed(&message))?;
    let (sql, params) = select(&filter);
    let rows = db::query(&sql, &params)?;
    let mut envelopes = rows
        .iter()
        .map(|row| {
            let data = row.text("data")?;
            Ok(Envelope {
                id: row.text("id")?,
                event_type: row.text("event_type")?,
                source: row.text("source")?,
                data: serde_json::from_str(&data).map_err(|err| {
                    Error::Invalid(format!("stored event data is not JSON: {err}"))
                })?,
                timestamp: row.text("timestamp")?,
                correlation_id: row.text("correlation_id")?,
                causation_id: row.opt_text("causation_id")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // Selected newest first to apply the limit; answered oldest first.
    envelopes.reverse();
    Ok(http::json(200, &envelopes))
}

fn filter(query: &str, caller: &Caller) -> Result<Filter, String> {
    let params = http::query_params(query);
    let given = |name: &str| params.get(name).filter(|value| !value.is_empty()).cloned();
    let limit = http::parse_limit(params.get("limit").map(String::as_str))?;
    Ok(Filter {
        correlation_id: given("correlationId"),
        event_type: given("eventType"),
        source: given("source"),
        user_id: visible_user(caller),
        limit,
    })
}

/// Whose events `caller` may see: `None` for everyone's (admins), else
/// their own user id. A `user_id = ?` condition never matches events
/// without `data.userId` (stored as NULL), so those are for admins only.
fn visible_user(caller: &Caller) -> Option<String> {
    if http::has_role(caller, "admin") {
        None
    } else {
        Some(caller.user_id.clone())
    }
}

/// Newest first by the event's own time, not by arrival: a retried or late
/// delivery takes its place in time (the contract lists logs in time
/// order). `julianday` reads RFC 3339 with or without fractions, which a
/// text comparison would misorder; arrival breaks ties.
const NEWEST_FIRST: &str = "julianday(timestamp) DESC, seq DESC";

/// The SQL and its parameters selecting `filter`'s events, newest first.
fn select(filter: &Filter) -> (String, Vec<Value>) {
    db::newest_first(
        "SELECT id, event_type, source, data, timestamp, correlation_id, causation_id FROM events",
        vec![
            (
                "correlation_id = ?",
                filter.correlation_id.as_ref().map(Value::from),
            ),
            (
                "event_type = ?",
                filter.event_type.as_ref().map(Value::from),
            ),
            ("source = ?", filter.source.as_ref().map(Value::from)),
            ("user_id = ?", filter.user_id.as_ref().map(Value::from)),
        ],
        NEWEST_FIRST,
        filter.limit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[&str]) -> Caller {
        Caller {
            user_id: "u1".into(),
            org_id: "o1".into(),
            roles: roles.iter().map(|role| role.to_string()).collect(),
        }
    }

    fn admin() -> Caller {
        caller(&["user", "admin"])
    }

    #[test]
    fn defaults_and_empty_values() {
        let filter = filter("correlationId=&eventType=&source=&limit=", &admin()).expect("valid");
        assert_eq!(
            filter,
            Filter {
                limit: 100,
                ..Filter::default()
            }
        );
    }

    #[test]
    fn a_caller_is_required() {
        let request = Request {
            method: "GET".into(),
            path: "/logs".into(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            caller: None,
        };
        let response = handle(&request).expect_err("refused");
        assert_eq!(response.status, 401);
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    #[test]
    fn filters_and_limit() {
        let filter = filter(
            "correlationId=c%201&eventType=user.registered&source=iam&limit=1000&other=x",
            &admin(),
        )
        .expect("valid");
        assert_eq!(filter.correlation_id.as_deref(), Some("c 1"));
        assert_eq!(filter.event_type.as_deref(), Some("user.registered"));
        assert_eq!(filter.source.as_deref(), Some("iam"));
        assert_eq!(filter.limit, 1000);
    }

    #[test]
    fn bad_limits() {
        for query in [
            "limit=0",
            "limit=1001",
            "limit=-1",
            "limit=ten",
            "limit=1.5",
        ] {
            let message = filter(query, &admin()).expect_err(query);
            assert!(message.starts_with("limit"), "{message}");
        }
    }

    #[test]
    fn visibility() {
        assert_eq!(
            filter("", &caller(&["user"]))
                .expect("valid")
                .user_id
                .as_deref(),
            Some("u1")
        );
        assert_eq!(
            filter("", &caller(&[])).expect("valid").user_id.as_deref(),
            Some("u1")
        );
        assert_eq!(filter("", &admin()).expect("valid").user_id, None);
        assert_eq!(
            filter("", &caller(&["Admin"]))
                .expect("valid")
                .user_id
                .as_deref(),
            Some("u1")
        );
    }

    #[test]
    fn sql_numbers_its_parameters() {
        let (sql, params) = select(&Filter {
            event_type: Some("a.b".into()),
            user_id: Some("u1".into()),
            limit: 5,
            ..Filter::default()
        });
        assert!(sql.ends_with("WHERE event_type = ?1 AND user_id = ?2 ORDER BY julianday(timestamp) DESC, seq DESC LIMIT ?3"));
        assert_eq!(
            params,
            vec![Value::from("a.b"), Value::from("u1"), Value::from(5_i64)]
        );

        let (sql, params) = select(&Filter {
            limit: 100,
            ..Filter::default()
        });
        assert!(sql.ends_with("FROM events ORDER BY julianday(timestamp) DESC, seq DESC LIMIT ?1"));
        assert_eq!(params.len(), 1);
    }
}
