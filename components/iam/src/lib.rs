//! IAM: user accounts.
//!
//! Routes (below the `/iam` prefix):
//! - `POST /register` → 201 the new user; emits `user.registered`.
//!
//! Login, profile and password changes come later: each is one more arm in
//! [`route`] and one more module.

mod password;
mod register;
mod users;

use weft_sdk::{http, Error, Event, Guest, Request, Response};

struct Iam;

impl Guest for Iam {
    fn migrations() -> Vec<String> {
        users::MIGRATIONS
            .iter()
            .map(|sql| sql.to_string())
            .collect()
    }

    /// IAM subscribes to no events.
    fn on_event(_event: Event) -> Result<(), Error> {
        Ok(())
    }

    fn on_request(request: Request) -> Response {
        route(&request).unwrap_or_else(|response| response)
    }

    /// IAM serves no request-reply subjects.
    fn on_message(subject: String, _payload: String) -> Result<String, Error> {
        Err(Error::NotFound(format!(
            "iam serves no subject `{subject}`"
        )))
    }
}

fn route(request: &Request) -> Result<Response, Response> {
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/register") => register::handle(request),
        (_, "/register") => Ok(http::method_not_allowed(&["POST"])),
        _ => Ok(http::not_found()),
    }
}

weft_sdk::export!(Iam);
