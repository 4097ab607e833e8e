//! Decoding the contract's JSON event envelope from bytes that came from
//! outside the host (a broker, a dead-letter row, an admin request): checked
//! for size and shape before any of it is used.

use super::{subject, Event};

/// Longest id, correlation id or causation id accepted.
pub const MAX_ID: usize = 128;
/// Longest `source` accepted.
pub const MAX_SOURCE: usize = 64;

/// Why bytes are not an acceptable event envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// More bytes than the limit.
    #[error("envelope of {len} bytes is larger than the {max}-byte limit")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, or not the envelope's fields and types.
    #[error("not an event envelope: {0}")]
    Malformed(String),
    /// A field is present but its value is unacceptable.
    #[error("field `{field}`: {why}")]
    Field {
        /// The field's JSON name.
        field: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

/// Decodes and checks one envelope of at most `max_bytes` bytes.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Event, EnvelopeError> {
    if bytes.len() > max_bytes {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: max_bytes,
        });
    }
    let event: Event =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    check(&event)?;
    Ok(event)
}

/// Checks the fields of an event that serde accepted.
pub fn check(event: &Event) -> Result<(), EnvelopeError> {
    let field = |field, why| Err(EnvelopeError::Field { field, why });
    if !is_id(&event.id) {
        return field("id", "must be 1-128 printable ASCII characters");
    }
    if subject::event_subject(&event.event_type).is_none() {
        return field(
            "eventType",
            "must be dot-separated tokens without wildcards or spaces",
        );
    }
    if event.source.is_empty()
        || event.source.len() > MAX_SOURCE
        || !event.source.bytes().all(|b| b.is_ascii_graphic())
    {
        return field("source", "must be 1-64 printable ASCII characters");
    }
    if !event.data.is_object() {
        return field("data", "must be a JSON object");
    }
    if time::OffsetDateTime::parse(
        &event.timestamp,
        &time::format_description::well_known::Rfc3339,
    )
    .is_err()
    {
        return field("timestamp", "must be an RFC 3339 date and time");
    }
    if !is_id(&event.correlation_id) {
        return field("correlationId", "must be 1-128 printable ASCII characters");
    }
    if event.causation_id.as_deref().is_some_and(|c| !is_id(c)) {
        return field("causationId", "must be 1-128 printable ASCII characters");
    }
    Ok(())
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID && s.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid() -> Event {
        Event {
            id: "5f0c6c1e-0000-4000-8000-000000000001".into(),
            event_type: "user.registered".into(),
            source: "iam".into(),
            data: serde_json::json!({"userId": "u1"}),
            timestamp: "2026-11-25T10:00:00Z".into(),
            correlation_id: "c-1".into(),
            causation_id: None,
            traceparent: None,
        }
    }

    #[test]
    fn a_contract_envelope_decodes() -> Result<(), EnvelopeError> {
        let text = r#"{"id":"e1","eventType":"account.created","source":"bpm","data":{"accountId":"a"},"timestamp":"2026-11-25T10:00:00.123Z","correlationId":"c","causationId":"e0"}"#;
        let event = decode(text.as_bytes(), 1024)?;
        assert_eq!(event.event_type, "account.created");
        assert_eq!(event.causation_id.as_deref(), Some("e0"));
        Ok(())
    }

    #[test]
    fn each_bad_field_is_named() {
        type Spoil = fn(&mut Event);
        let cases: [(&str, Spoil); 7] = [
            ("id", |e| e.id.clear()),
            ("eventType", |e| e.event_type = "user.*".into()),
            ("source", |e| e.source = "a b".into()),
            ("data", |e| e.data = serde_json::json!([1])),
            ("timestamp", |e| e.timestamp = "yesterday".into()),
            ("correlationId", |e| e.correlation_id = "x".repeat(129)),
            ("causationId", |e| e.causation_id = Some(String::new())),
        ];
        for (name, spoil) in cases {
            let mut event = valid();
            spoil(&mut event);
            let bytes = serde_json::to_vec(&event).unwrap_or_default();
            match decode(&bytes, 1 << 20) {
                Err(EnvelopeError::Field { field, .. }) => assert_eq!(field, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn size_is_checked_before_parsing() {
        let bytes = serde_json::to_vec(&valid()).unwrap_or_default();
        assert!(matches!(
            decode(&bytes, bytes.len() - 1),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    fn token() -> impl Strategy<Value = String> {
        "[a-z0-9_-]{1,12}"
    }

    fn event() -> impl Strategy<Value = Event> {
        (
            "[ -~]{1,128}",
            prop::collection::vec(token(), 1..5),
            "[a-z][a-z0-9-]{0,30}",
            prop::collection::btree_map("[a-zA-Z]{1,8}", any::<i64>(), 0..5),
            0i64..4_000_000_000,
            "[!-~]{1,128}",
            prop::option::of("[!-~]{1,128}"),
        )
            .prop_map(
                |(id, tokens, source, data, secs, correlation, causation)| Event {
                    id: id.replace(' ', "_"),
                    event_type: tokens.join("."),
                    source,
                    data: serde_json::json!(data),
                    timestamp: time::OffsetDateTime::from_unix_timestamp(secs)
                        .ok()
                        .and_then(|t| {
                            t.format(&time::format_description::well_known::Rfc3339)
                                .ok()
                        })
                        .unwrap_or_default(),
                    correlation_id: correlation,
                    causation_id: causation,
                    traceparent: None,
                },
            )
    }

    proptest! {
        // Arbitrary bytes from a client or a broker: an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, 1 << 20);
        }

        // JSON that is nearly an envelope: fields of the wrong kinds.
        #[test]
        fn arbitrary_json_objects_never_panic(
            fields in prop::collection::btree_map(
                prop::sample::select(vec!["id", "eventType", "source", "data", "timestamp", "correlationId", "causationId", "other"]),
                prop_oneof![
                    Just(serde_json::Value::Null),
                    any::<i64>().prop_map(serde_json::Value::from),
                    any::<String>().prop_map(serde_json::Value::from),
                    Just(serde_json::json!({})),
                    Just(serde_json::json!([])),
                ],
                0..8,
            )
        ) {
            let bytes = serde_json::to_vec(&fields).unwrap_or_default();
            let _ = decode(&bytes, 1 << 20);
        }

        // Every well-formed envelope survives encode → decode unchanged.
        #[test]
        fn valid_envelopes_round_trip(event in event()) {
            let bytes = serde_json::to_vec(&event).unwrap_or_default();
            prop_assert_eq!(decode(&bytes, 1 << 20), Ok(event));
        }
    }
}
