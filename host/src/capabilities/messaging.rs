//! `weft:service/messaging`: publishing events (held until commit) and
//! request-reply through the bus.

use std::time::{Duration, Instant};

use crate::bindings::weft::service::messaging::Host;
use crate::bindings::GuestError;
use crate::bus::{subject, BusError, Event};
use crate::state::{HostState, MAX_EVENTS_PER_INVOCATION};

impl From<BusError> for GuestError {
    fn from(e: BusError) -> GuestError {
        match e {
            BusError::InvalidSubject(s) => GuestError::Invalid(format!("invalid subject `{s}`")),
            BusError::NoResponder(_) => GuestError::NoResponder,
            BusError::Timeout => GuestError::Timeout,
            BusError::Remote(m) => GuestError::Remote(m),
            BusError::Closed => GuestError::Unavailable("the bus is closed".into()),
            BusError::Unavailable(why) => GuestError::Unavailable(why),
        }
    }
}

/// A `denied` error, and a log line that names who tried what.
pub fn denied(state: &HostState, what: &str, grant: &str) -> GuestError {
    tracing::warn!(
        component = %state.inv.component.name,
        correlation_id = %state.inv.correlation_id,
        "denied: {what} (not in grants.{grant} of runtime.toml)"
    );
    GuestError::Denied(format!("{what} is not granted to this component"))
}

/// Checks the size of a payload against the component's limit.
pub fn check_payload(state: &HostState, what: &str, len: usize) -> Result<(), GuestError> {
    let max = state.inv.component.limits.max_payload_bytes;
    if len > max {
        return Err(GuestError::LimitExceeded(format!(
            "{what} of {len} bytes is larger than the {max}-byte limit"
        )));
    }
    Ok(())
}

/// Checks and builds an event for the outbox.
fn new_event(state: &HostState, event_type: &str, data: &str) -> Result<Event, GuestError> {
    if subject::event_subject(event_type).is_none() {
        return Err(GuestError::Invalid(format!(
            "event type `{}` must be dot-separated tokens without wildcards",
            shorten(event_type)
        )));
    }
    if !state.inv.component.grants.may_publish(event_type) {
        return Err(denied(
            state,
            &format!("publishing `{event_type}`"),
            "publish",
        ));
    }
    check_payload(state, "event data", data.len())?;
    if state.outbox.len() >= MAX_EVENTS_PER_INVOCATION {
        return Err(GuestError::LimitExceeded(format!(
            "more than {MAX_EVENTS_PER_INVOCATION} events in one invocation"
        )));
    }
    let data: serde_json::Value = serde_json::from_str(data)
        .map_err(|e| GuestError::Invalid(format!("event data is not JSON: {e}")))?;
    if !data.is_object() {
        return Err(GuestError::Invalid(
            "event data must be a JSON object".into(),
        ));
    }
    Ok(Event {
        id: crate::bus::new_event_id(),
        event_type: event_type.to_owned(),
        source: state.inv.component.name.clone(),
        data,
        timestamp: state.now_rfc3339(),
        correlation_id: state.inv.correlation_id.clone(),
        causation_id: state.inv.causation_id.clone(),
        traceparent: state.inv.traceparent.clone(),
    })
}

impl Host for HostState {
    async fn publish(
        &mut self,
        event_type: String,
        data: String,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        Ok(new_event(self, &event_type, &data).map(|event| {
            let id = event.id.clone();
            self.outbox.push(event);
            id
        }))
    }

    async fn request(
        &mut self,
        subject: String,
        payload: String,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        if !subject::is_literal(&subject) {
            return Ok(Err(GuestError::Invalid(format!(
                "subject `{}` must be dot-separated tokens without wildcards",
                shorten(&subject)
            ))));
        }
        if !self.inv.component.grants.may_request(&subject) {
            return Ok(Err(denied(
                self,
                &format!("requesting `{subject}`"),
                "request",
            )));
        }
        if let Err(e) = check_payload(self, "payload", payload.len()) {
            return Ok(Err(e));
        }
        // Never wait past the invocation's own deadline.
        let left = self.inv.deadline.saturating_duration_since(Instant::now());
        let timeout = Duration::from_millis(u64::from(timeout_ms)).min(left);
        let bus = self.inv.component.bus.clone();
        let answer = bus
            .request(
                &subject,
                payload,
                self.inv.correlation_id.clone(),
                self.inv.traceparent.clone(),
                timeout,
            )
            .await;
        Ok(answer.map_err(GuestError::from))
    }
}

/// At most the first 64 bytes of `text`, for error messages about input
/// that may be huge.
pub fn shorten(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
