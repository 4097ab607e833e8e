//! Workflows: made on request by the buildings component. Runs as several
//! replicas (a queue group); each request is handled by exactly one, which
//! records itself in `handledBy`.
//!
//! Messages: `workflows.create` `{name, buildingId, orgId?}` → stores a
//! `pending` workflow, emits `workflow.created`, replies `{id, name,
//! buildingId, status, handledBy, orgId, createdAt}`. A payload that does
//! not fit → `invalid`; another subject → `not-found`.
//!
//! Routes (below the `/workflows` prefix), auth required:
//! - `GET /?buildingId=&limit=` → `[{id, name, buildingId, status,
//!   handledBy, orgId, createdAt}]`, newest first. A caller sees the
//!   workflows of their org and those without an org; an admin sees all.
//!
//! No events consumed, no timers, no config keys.

mod workflows;

use weft_sdk::{http, Error, Event, Guest, Request, Response};

struct Workflows;

impl Guest for Workflows {
    fn migrations() -> Vec<String> {
        workflows::MIGRATIONS
            .iter()
            .map(|sql| sql.to_string())
            .collect()
    }

    /// Workflows subscribes to nothing; anything delivered is ignored.
    fn on_event(_event: Event) -> Result<(), Error> {
        Ok(())
    }

    fn on_request(request: Request) -> Response {
        let result = match resolve(&request.method, &request.path) {
            Route::List => workflows::list(&request),
            Route::MethodNotAllowed(allowed) => Ok(http::method_not_allowed(allowed)),
            Route::NotFound => Ok(http::not_found()),
        };
        result.unwrap_or_else(|response| response)
    }

    fn on_message(subject: String, payload: String) -> Result<String, Error> {
        match subject.as_str() {
            workflows::CREATE_SUBJECT => workflows::on_create(&payload),
            _ => Err(Error::NotFound(format!(
                "workflows serves no subject `{subject}`"
            ))),
        }
    }

    /// Workflows has no timers.
    fn on_timer(name: String) -> Result<(), Error> {
        Err(Error::NotFound(format!("workflows has no timer `{name}`")))
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq)]
enum Route {
    List,
    MethodNotAllowed(&'static [&'static str]),
    NotFound,
}

fn resolve(method: &str, path: &str) -> Route {
    match (method, http::segments(path).as_slice()) {
        ("GET", []) => Route::List,
        (_, []) => Route::MethodNotAllowed(&["GET"]),
        _ => Route::NotFound,
    }
}

weft_sdk::export!(Workflows);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(resolve("GET", "/"), Route::List);
        assert_eq!(resolve("GET", ""), Route::List);
        assert_eq!(resolve("POST", "/"), Route::MethodNotAllowed(&["GET"]));
        assert_eq!(resolve("GET", "/w1"), Route::NotFound);
        assert_eq!(resolve("DELETE", "/w1"), Route::NotFound);
    }
}
