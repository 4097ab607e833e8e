//! LGM: the event log.
//!
//! Subscribes to every event and keeps each once, by id. Routes (below the
//! `/lgm` prefix):
//! - `GET /logs?correlationId=&eventType=&source=&limit=` (auth) → the
//!   newest `limit` matching events the caller may see, as contract
//!   envelopes, oldest first. Admins see all; others their own
//!   (`data.userId`).

mod logs;
mod store;

use weft_sdk::{http, Error, Event, Guest, Request, Response};

struct Lgm;

impl Guest for Lgm {
    fn migrations() -> Vec<String> {
        store::MIGRATIONS
            .iter()
            .map(|sql| sql.to_string())
            .collect()
    }

    fn on_event(event: Event) -> Result<(), Error> {
        store::keep(&event)
    }

    fn on_request(request: Request) -> Response {
        route(&request).unwrap_or_else(|response| response)
    }

    /// LGM serves no request-reply subjects.
    fn on_message(subject: String, _payload: String) -> Result<String, Error> {
        Err(Error::NotFound(format!(
            "lgm serves no subject `{subject}`"
        )))
    }

    /// LGM has no timers.
    fn on_timer(name: String) -> Result<(), Error> {
        Err(Error::NotFound(format!("lgm has no timer `{name}`")))
    }
}

fn route(request: &Request) -> Result<Response, Response> {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/logs") => logs::handle(request),
        (_, "/logs") => Ok(http::method_not_allowed(&["GET"])),
        _ => Ok(http::not_found()),
    }
}

weft_sdk::export!(Lgm);
