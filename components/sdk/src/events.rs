//! Publishing events and reading them back.
//!
//! The host fills in an event's id, source, timestamp, correlation id and
//! causation id; a component gives only the type and the data. Events are
//! held until the invocation succeeds, so a failed invocation sends none.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, Event};

/// Publishes an event of `event_type` with `data` (serialised to a JSON
/// object). Returns the new event's id.
pub fn publish(event_type: &str, data: &impl Serialize) -> Result<String, Error> {
    let data = serde_json::to_string(data)
        .map_err(|err| Error::Invalid(format!("cannot serialise `{event_type}` data: {err}")))?;
    crate::bindings::weft::service::messaging::publish(event_type, &data)
}

/// The event's `data` parsed as `T`; [`Error::Invalid`] when it does not fit.
pub fn data<T: DeserializeOwned>(event: &Event) -> Result<T, Error> {
    crate::from_json_object(&event.data).map_err(|err| {
        Error::Invalid(format!(
            "`{}` event {} has unexpected data: {err}",
            event.event_type, event.id
        ))
    })
}

/// An event in the contract's JSON shape, `data` as a JSON value:
/// `{"id", "eventType", "source", "data", "timestamp", "correlationId",
/// "causationId"}` (`causationId` is `null` when absent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    pub source: String,
    pub data: serde_json::Value,
    pub timestamp: String,
    pub correlation_id: String,
    pub causation_id: Option<String>,
}

impl Envelope {
    /// The envelope of `event`; [`Error::Invalid`] when its data is not a
    /// JSON object.
    pub fn from_event(event: &Event) -> Result<Envelope, Error> {
        let data: serde_json::Value = data(event)?;
        if !data.is_object() {
            return Err(Error::Invalid(format!(
                "`{}` event {} has data that is not a JSON object",
                event.event_type, event.id
            )));
        }
        Ok(Envelope {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            source: event.source.clone(),
            data,
            timestamp: event.timestamp.clone(),
            correlation_id: event.correlation_id.clone(),
            causation_id: event.causation_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: &str) -> Event {
        Event {
            id: "e1".into(),
            event_type: "user.registered".into(),
            source: "iam".into(),
            data: data.into(),
            timestamp: "2026-11-25T10:00:00Z".into(),
            correlation_id: "c1".into(),
            causation_id: None,
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Registered {
        user_id: String,
    }

    #[test]
    fn typed_data() {
        let parsed: Registered = data(&event(r#"{"userId":"u1"}"#)).expect("parses");
        assert_eq!(parsed.user_id, "u1");
        let err = data::<Registered>(&event(r#"{"user":"u1"}"#)).expect_err("no userId");
        assert!(matches!(err, Error::Invalid(m) if m.contains("userId") && m.contains("e1")));
    }

    #[test]
    fn envelope_json_shape() {
        let envelope = Envelope::from_event(&event(r#"{"userId":"u1"}"#)).expect("an object");
        assert_eq!(
            serde_json::to_value(&envelope).expect("serialises"),
            json!({
                "id": "e1", "eventType": "user.registered", "source": "iam",
                "data": {"userId": "u1"}, "timestamp": "2026-11-25T10:00:00Z",
                "correlationId": "c1", "causationId": null
            })
        );
        assert!(Envelope::from_event(&event("[1]")).is_err());
        assert!(Envelope::from_event(&event("nope")).is_err());
    }
}
