//! Alarms generator (`alarms-generator` in `runtime.toml`): makes up alarms
//! for the buildings it has heard of, on a timer.
//!
//! Events: on `building.created`, remembers the building and its org (once
//! per building id, whatever the event id).
//!
//! Timers: `generate` → emits `alarm.created` `{alarmId, buildingId,
//! severity, message, orgId}` for a random known building (`buildingId` and
//! `orgId` null when none is known), with a random severity (`low`,
//! `medium`, `high`, `critical`) and message. Another timer name →
//! `not-found`.
//!
//! No HTTP routes (every path is 404), no subjects served, no config keys.

mod generator;

use weft_sdk::{http, Error, Event, Guest, Request, Response};

struct AlarmGen;

impl Guest for AlarmGen {
    fn migrations() -> Vec<String> {
        generator::MIGRATIONS
            .iter()
            .map(|sql| sql.to_string())
            .collect()
    }

    fn on_event(event: Event) -> Result<(), Error> {
        match event.event_type.as_str() {
            "building.created" => generator::on_building_created(&event),
            _ => Ok(()),
        }
    }

    /// No routes.
    fn on_request(_request: Request) -> Response {
        http::not_found()
    }

    /// The generator serves no request-reply subjects.
    fn on_message(subject: String, _payload: String) -> Result<String, Error> {
        Err(Error::NotFound(format!(
            "alarms-generator serves no subject `{subject}`"
        )))
    }

    fn on_timer(name: String) -> Result<(), Error> {
        match name.as_str() {
            generator::GENERATE_TIMER => generator::generate(),
            _ => Err(Error::NotFound(format!(
                "alarms-generator has no timer `{name}`"
            ))),
        }
    }
}

weft_sdk::export!(AlarmGen);
