//! `weft:service/messaging`: publishing events (held until commit) and
//! request-reply through the bus.

use std::time::{Duration, Instant};

use crate::bindings::weft::service::messaging::Host;
use crate::bindings::GuestError;
use crate::bus::{subject, BusError, Event};
use crate::state::{HostState, MAX_EVENTS_PER_INVOCATION};
use crate::time::now_rfc3339;

/// Event data and request payloads above this size are refused.
pub const MAX_PAYLOAD: usize = 1 << 20;

impl From<BusError> for GuestError {
    fn from(e: BusError) -> GuestError {
        match e {
            BusError::InvalidSubject(s) => GuestError::Invalid(format!("invalid subject `{s}`")),
            BusError::NoResponder(_) => GuestError::NoResponder,
            BusError::Timeout => GuestError::Timeout,
            BusError::Remote(m) => GuestError::Remote(m),
            BusError::Closed => GuestError::Unavailable("the bus is closed".into()),
        }
    }
}

/// Checks and builds an event for the outbox.
fn new_event(state: &HostState, event_type: &str, data: &str) -> Result<Event, GuestError> {
    if subject::event_subject(event_type).is_none() {
        return Err(GuestError::Invalid(format!(
            "event type `{event_type}` must be dot-separated tokens without wildcards"
        )));
    }
    if data.len() > MAX_PAYLOAD {
        return Err(GuestError::LimitExceeded(format!(
            "event data larger than {MAX_PAYLOAD} bytes"
        )));
    }
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
        id: uuid::Uuid::new_v4().to_string(),
        event_type: event_type.to_owned(),
        source: state.inv.component.name.clone(),
        data,
        timestamp: now_rfc3339(),
        correlation_id: state.inv.correlation_id.clone(),
        causation_id: state.inv.causation_id.clone(),
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
        if payload.len() > MAX_PAYLOAD {
            return Ok(Err(GuestError::LimitExceeded(format!(
                "payload larger than {MAX_PAYLOAD} bytes"
            ))));
        }
        // Never wait past the invocation's own deadline.
        let left = self.inv.deadline.saturating_duration_since(Instant::now());
        let timeout = Duration::from_millis(u64::from(timeout_ms)).min(left);
        let bus = self.inv.component.bus.clone();
        let answer = bus
            .request(&subject, payload, self.inv.correlation_id.clone(), timeout)
            .await;
        Ok(answer.map_err(GuestError::from))
    }
}
