//! Alarms: each `alarm.created` processed once, stored and listed.
//!
//! Events: on `alarm.created` `{alarmId, buildingId, severity, message,
//! orgId}`, stores the alarm once per `alarmId` with the replica that
//! processed it, and only then emits `alarm.processed` `{alarmId,
//! buildingId, severity, processedBy, orgId}`; a redelivery changes and
//! emits nothing.
//!
//! Routes (below the `/alarms` prefix), auth required:
//! - `GET /?severity=&limit=` → processed alarms, newest first. A caller
//!   sees their org's alarms; an admin sees all (alarms without an org are
//!   for admins only).
//!
//! No subjects served, no timers, no config keys.

mod alarms;

use weft_sdk::{http, Error, Event, Guest, Request, Response};

struct Alarms;

impl Guest for Alarms {
    fn migrations() -> Vec<String> {
        alarms::MIGRATIONS
            .iter()
            .map(|sql| sql.to_string())
            .collect()
    }

    fn on_event(event: Event) -> Result<(), Error> {
        match event.event_type.as_str() {
            "alarm.created" => alarms::on_alarm_created(&event),
            _ => Ok(()),
        }
    }

    fn on_request(request: Request) -> Response {
        let result = match resolve(&request.method, &request.path) {
            Route::List => alarms::list(&request),
            Route::MethodNotAllowed(allowed) => Ok(http::method_not_allowed(allowed)),
            Route::NotFound => Ok(http::not_found()),
        };
        result.unwrap_or_else(|response| response)
    }

    /// Alarms serves no request-reply subjects.
    fn on_message(subject: String, _payload: String) -> Result<String, Error> {
        Err(Error::NotFound(format!(
            "alarms serves no subject `{subject}`"
        )))
    }

    /// Alarms has no timers.
    fn on_timer(name: String) -> Result<(), Error> {
        Err(Error::NotFound(format!("alarms has no timer `{name}`")))
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

weft_sdk::export!(Alarms);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(resolve("GET", "/"), Route::List);
        assert_eq!(resolve("GET", ""), Route::List);
        assert_eq!(resolve("POST", "/"), Route::MethodNotAllowed(&["GET"]));
        assert_eq!(resolve("GET", "/a1"), Route::NotFound);
    }
}
