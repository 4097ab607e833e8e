//! Buildings: an organisation's buildings, each created with a workflow that
//! the workflows component makes (request-reply on `workflows.create`).
//!
//! Routes (below the `/buildings` prefix), all auth required:
//! - `POST /` `{name, address?}` → 201 `{id, name, address, orgId, createdAt,
//!   workflow: {id, name, buildingId, status}}`; emits `building.created`.
//!   No workflow in time → 503 `upstream_unavailable`, nothing stored.
//! - `GET /?limit=` → the caller's org's buildings, newest first.
//! - `GET /{id}` → the building, or 404 when it is not in the caller's org.
//!
//! Config: `workflow_timeout_ms` (default 2000), how long to wait for
//! `workflows.create`. No events consumed, no subjects served, no timers.

mod buildings;
mod schema;

use weft_sdk::{http, Error, Event, Guest, Request, Response};

struct Buildings;

impl Guest for Buildings {
    fn migrations() -> Vec<String> {
        schema::MIGRATIONS
            .iter()
            .map(|sql| sql.to_string())
            .collect()
    }

    /// Buildings subscribes to nothing; anything delivered is ignored.
    fn on_event(_event: Event) -> Result<(), Error> {
        Ok(())
    }

    fn on_request(request: Request) -> Response {
        let result = match resolve(&request.method, &request.path) {
            Route::List => buildings::list(&request),
            Route::Create => buildings::create(&request),
            Route::Get(id) => buildings::get(&request, id),
            Route::MethodNotAllowed(allowed) => Ok(http::method_not_allowed(allowed)),
            Route::NotFound => Ok(http::not_found()),
        };
        result.unwrap_or_else(|response| response)
    }

    /// Buildings serves no request-reply subjects.
    fn on_message(subject: String, _payload: String) -> Result<String, Error> {
        Err(Error::NotFound(format!(
            "buildings serves no subject `{subject}`"
        )))
    }

    /// Buildings has no timers.
    fn on_timer(name: String) -> Result<(), Error> {
        Err(Error::NotFound(format!("buildings has no timer `{name}`")))
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    List,
    Create,
    Get(&'a str),
    MethodNotAllowed(&'static [&'static str]),
    NotFound,
}

fn resolve<'a>(method: &str, path: &'a str) -> Route<'a> {
    match (method, http::segments(path).as_slice()) {
        ("GET", []) => Route::List,
        ("POST", []) => Route::Create,
        (_, []) => Route::MethodNotAllowed(&["GET", "POST"]),
        ("GET", [id]) => Route::Get(id),
        (_, [_]) => Route::MethodNotAllowed(&["GET"]),
        _ => Route::NotFound,
    }
}

weft_sdk::export!(Buildings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(resolve("GET", "/"), Route::List);
        assert_eq!(resolve("GET", ""), Route::List);
        assert_eq!(resolve("POST", "/"), Route::Create);
        assert_eq!(resolve("GET", "/b1"), Route::Get("b1"));
        assert_eq!(resolve("GET", "/b1/"), Route::Get("b1"));
    }

    #[test]
    fn wrong_methods_and_unknown_paths() {
        assert_eq!(
            resolve("DELETE", "/"),
            Route::MethodNotAllowed(&["GET", "POST"])
        );
        assert_eq!(resolve("PUT", "/b1"), Route::MethodNotAllowed(&["GET"]));
        assert_eq!(resolve("POST", "/b1"), Route::MethodNotAllowed(&["GET"]));
        assert_eq!(resolve("GET", "/b1/workflow"), Route::NotFound);
        assert_eq!(resolve("POST", "/b1/x/y"), Route::NotFound);
    }
}
