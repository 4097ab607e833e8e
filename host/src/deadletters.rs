//! Dead letters: events a component failed to handle on every attempt,
//! kept in its own database (the host table `_weft_dead_letters`) with the
//! attempt count and the last error, until an operator replays them
//! (`weft dlq`, or the admin API).
//!
//! A replay delivers the event once more to that component alone, in one
//! transaction with the removal of the dead letter: it succeeds and the
//! dead letter is gone, or it fails and the dead letter stays, with one
//! attempt more and the new error.

use std::sync::Arc;

use serde::Serialize;

use crate::bus::{Delivery, Event};
use crate::component::LoadedComponent;
use crate::db::{Database, DbError};

/// One dead letter, as the admin API and `weft dlq list` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// `<component>:<number>`, what `weft dlq replay` takes.
    pub id: String,
    /// The component that failed to handle it.
    pub component: String,
    /// Deliveries that failed.
    pub attempts: u32,
    /// Why the last one failed.
    pub last_error: String,
    /// When the last one failed (RFC 3339).
    pub failed_at: String,
    /// The event.
    pub event: Event,
}

/// Why a replay did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The id is not `<component>:<number>` of a component of this host.
    #[error("no dead letter `{0}` (ids look like bpm:3; see `weft dlq list`)")]
    NotFound(String),
    /// The handler failed again; the dead letter stays.
    #[error("delivery failed again: {0}")]
    Failed(String),
    /// The database could not be read or written.
    #[error("database: {0}")]
    Db(#[from] DbError),
}

/// Keeps `event` as a dead letter of the component owning `db`.
pub async fn add(db: &Database, event: &Event, attempts: u32, error: &str) -> Result<(), DbError> {
    let json = serde_json::to_string(event)
        .map_err(|e| DbError::Invalid(format!("event not serialisable: {e}")))?;
    db.host_write(|sql| {
        sql.execute(
            "INSERT INTO _weft_dead_letters (event_id, event, attempts, last_error)
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![event.id, json, attempts, error],
        )
    })
    .await?;
    Ok(())
}

/// The component's dead letters, oldest first.
pub fn list(component: &LoadedComponent) -> Result<Vec<DeadLetter>, DbError> {
    let rows = component.ctx.db.read(|c| {
        let mut stmt = c.prepare(
            "SELECT id, event, attempts, last_error, failed_at
             FROM _weft_dead_letters ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })?;
    let mut out = Vec::with_capacity(rows.len());
    for (n, json, attempts, last_error, failed_at) in rows {
        let event = serde_json::from_str(&json).map_err(|e| {
            DbError::Invalid(format!(
                "dead letter {}:{n} is unreadable: {e}",
                component.name()
            ))
        })?;
        out.push(DeadLetter {
            id: format!("{}:{n}", component.name()),
            component: component.name().to_owned(),
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            last_error,
            failed_at,
            event,
        });
    }
    Ok(out)
}

/// Splits `bpm:3` into the component and the number.
pub fn parse_id(id: &str) -> Option<(&str, i64)> {
    let (component, n) = id.rsplit_once(':')?;
    let n = n.parse().ok().filter(|n| *n > 0)?;
    (!component.is_empty()).then_some((component, n))
}

/// Delivers dead letter number `n` of `component` once more.
pub async fn replay(component: &Arc<LoadedComponent>, n: i64) -> Result<(), ReplayError> {
    let id = format!("{}:{n}", component.name());
    let found = component.ctx.db.read(|c| {
        let mut stmt = c.prepare("SELECT event FROM _weft_dead_letters WHERE id = ?1")?;
        let mut rows = stmt.query_map([n], |r| r.get::<_, String>(0))?;
        rows.next().transpose()
    })?;
    let json = found.ok_or_else(|| ReplayError::NotFound(id.clone()))?;
    let event: Event = serde_json::from_str(&json)
        .map_err(|e| DbError::Invalid(format!("dead letter {id} is unreadable: {e}")))?;
    let delivery = Delivery::untracked(Arc::new(event));
    let remove = move |batch: &crate::db::Batch| {
        let gone =
            batch.host(|sql| sql.execute("DELETE FROM _weft_dead_letters WHERE id = ?1", [n]))?;
        if gone == 1 {
            Ok(())
        } else {
            // Replayed by someone else in the meantime.
            Err(DbError::Conflict(format!("dead letter {id} is gone")))
        }
    };
    let instance = component.next_instance();
    let failed = component
        .deliver(&instance, std::slice::from_ref(&delivery), Some(&remove))
        .await;
    let Some((_, why)) = failed.into_iter().next() else {
        tracing::info!(
            component = component.name(),
            dead_letter = n,
            "dead letter replayed"
        );
        return Ok(());
    };
    component
        .ctx
        .db
        .host_write(|sql| {
            sql.execute(
                "UPDATE _weft_dead_letters SET attempts = attempts + 1, last_error = ?2,
                   failed_at = strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE id = ?1",
                rusqlite::params![n, why],
            )
        })
        .await?;
    Err(ReplayError::Failed(why))
}

#[cfg(test)]
mod tests {
    use super::parse_id;

    #[test]
    fn ids_name_a_component_and_a_positive_number() {
        assert_eq!(parse_id("bpm:3"), Some(("bpm", 3)));
        assert_eq!(
            parse_id("alarms-generator:12"),
            Some(("alarms-generator", 12))
        );
        for bad in ["bpm", "bpm:", ":3", "bpm:0", "bpm:-1", "bpm:x", ""] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
