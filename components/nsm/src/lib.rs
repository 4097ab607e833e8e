//! NSM: notifications, made from events, listed, marked read and pushed
//! live to the user's WebSockets (the gateway serves `GET /nsm/ws`).
//!
//! Events: `user.registered` → a `welcome` notification; `account.created`
//! → an `account_created` one; each once per event id. Each new one emits
//! `notification.sent` and is pushed to its user.
//!
//! Routes (below the `/nsm` prefix), auth required:
//! - `GET /notifications` → the caller's, newest first.
//! - `POST /notifications/{id}/read` → 204.

mod compose;
mod notifications;

use weft_sdk::{http, Error, Event, Guest, Request, Response};

struct Nsm;

impl Guest for Nsm {
    fn migrations() -> Vec<String> {
        notifications::MIGRATIONS
            .iter()
            .map(|sql| sql.to_string())
            .collect()
    }

    fn on_event(event: Event) -> Result<(), Error> {
        notifications::on_event(&event)
    }

    fn on_request(request: Request) -> Response {
        let result = match resolve(&request.method, &request.path) {
            Route::List => notifications::list(&request),
            Route::MarkRead(id) => notifications::mark_read(&request, id),
            Route::MethodNotAllowed(allowed) => Ok(http::method_not_allowed(allowed)),
            Route::NotFound => Ok(http::not_found()),
        };
        result.unwrap_or_else(|response| response)
    }

    /// NSM serves no request-reply subjects.
    fn on_message(subject: String, _payload: String) -> Result<String, Error> {
        Err(Error::NotFound(format!(
            "nsm serves no subject `{subject}`"
        )))
    }

    /// NSM has no timers.
    fn on_timer(name: String) -> Result<(), Error> {
        Err(Error::NotFound(format!("nsm has no timer `{name}`")))
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    List,
    MarkRead(&'a str),
    MethodNotAllowed(&'static [&'static str]),
    NotFound,
}

fn resolve<'a>(method: &str, path: &'a str) -> Route<'a> {
    match (method, http::segments(path).as_slice()) {
        ("GET", ["notifications"]) => Route::List,
        (_, ["notifications"]) => Route::MethodNotAllowed(&["GET"]),
        ("POST", ["notifications", id, "read"]) => Route::MarkRead(id),
        (_, ["notifications", _, "read"]) => Route::MethodNotAllowed(&["POST"]),
        _ => Route::NotFound,
    }
}

weft_sdk::export!(Nsm);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(resolve("GET", "/notifications"), Route::List);
        assert_eq!(
            resolve("POST", "/notifications/n1/read"),
            Route::MarkRead("n1")
        );
        assert_eq!(
            resolve("POST", "/notifications"),
            Route::MethodNotAllowed(&["GET"])
        );
        assert_eq!(
            resolve("GET", "/notifications/n1/read"),
            Route::MethodNotAllowed(&["POST"])
        );
        assert_eq!(resolve("GET", "/notifications/n1"), Route::NotFound);
        assert_eq!(resolve("GET", "/ws"), Route::NotFound);
        assert_eq!(resolve("GET", "/"), Route::NotFound);
    }
}
