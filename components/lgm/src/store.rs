//! The `events` table: every event received, once, in arrival order.

use weft_sdk::db::{self, Value};
use weft_sdk::events::Envelope;
use weft_sdk::{Error, Event};

/// Only ever append: the host remembers how many have run.
///
/// `seq` (the rowid) orders events by arrival; `id` is unique so a
/// redelivered event is kept once.
pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        source TEXT NOT NULL,
        data TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        causation_id TEXT,
        user_id TEXT
    )",
    "CREATE INDEX events_correlation ON events (correlation_id, seq)",
    "CREATE INDEX events_type ON events (event_type, seq)",
    "CREATE INDEX events_user ON events (user_id, seq)",
];

/// Stores `event` unless one with its id is already stored. Data that is
/// not a JSON object is [`Error::Invalid`].
pub fn keep(event: &Event) -> Result<(), Error> {
    let envelope = Envelope::from_event(event)?;
    let user_id = envelope
        .data
        .get("userId")
        .and_then(|id| id.as_str())
        .map(str::to_owned);
    db::execute(
        "INSERT INTO events (id, event_type, source, data, timestamp, correlation_id,
                             causation_id, user_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO NOTHING",
        &[
            Value::from(&event.id),
            Value::from(&event.event_type),
            Value::from(&event.source),
            Value::from(&event.data),
            Value::from(&event.timestamp),
            Value::from(&event.correlation_id),
            Value::from(event.causation_id.clone()),
            Value::from(user_id),
        ],
    )?;
    Ok(())
}
