//! The `notifications` table and its routes.
//!
//! A notification as the contract shows it (in `GET /notifications` and in
//! each WebSocket push): `{id, userId, kind, title, body, createdAt,
//! readAt}`.

use serde::Serialize;
use serde_json::json;
use weft_sdk::db::{self, Row, Value};
use weft_sdk::entity::{BaseEntity, Owner};
use weft_sdk::{events, http, log, now_rfc3339, realtime, Error, Event, Request, Response};

use crate::compose::{self, Draft};

/// Only ever append: the host remembers how many have run.
///
/// `source_event_id` is the id of the event that made the notification:
/// UNIQUE, so a redelivered event makes nothing new.
pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE notifications (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        owner_user_id TEXT NOT NULL,
        owner_org_id TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}',
        metadata TEXT NOT NULL DEFAULT '{}',
        context TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        read_at TEXT,
        source_event_id TEXT NOT NULL UNIQUE
    )",
    "CREATE INDEX notifications_user ON notifications (owner_user_id, seq)",
];

/// A stored notification; `base.owner.user_id` is its recipient.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub base: BaseEntity,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub read_at: Option<String>,
    pub source_event_id: String,
}

/// A notification as the contract shows it.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub created_at: &'a str,
    pub read_at: Option<&'a str>,
}

impl Notification {
    /// A new unread notification from `draft`, made by event `event`.
    pub fn from_draft(draft: Draft, event: &Event) -> Notification {
        let mut base = BaseEntity::new(Owner {
            user_id: draft.user_id,
            org_id: draft.org_id,
        });
        base.add_context(json!({"eventId": event.id, "eventType": event.event_type}));
        Notification {
            base,
            kind: draft.kind.to_string(),
            title: draft.title,
            body: draft.body,
            read_at: None,
            source_event_id: event.id.clone(),
        }
    }

    pub fn view(&self) -> NotificationView<'_> {
        NotificationView {
            id: &self.base.id,
            user_id: &self.base.owner.user_id,
            kind: &self.kind,
            title: &self.title,
            body: &self.body,
            created_at: &self.base.created_at,
            read_at: self.read_at.as_deref(),
        }
    }
}

/// `notification.sent` data.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Sent<'a> {
    notification_id: &'a str,
    user_id: &'a str,
    kind: &'a str,
}

// --- events ------------------------------------------------------------------

/// Makes the event's notification, once per event id: stores it, emits
/// `notification.sent` and pushes it to the user's WebSockets.
pub fn on_event(event: &Event) -> Result<(), Error> {
    let draft = compose::compose(&event.event_type, &event.data)
        .map_err(|message| Error::Invalid(format!("event {}: {message}", event.id)))?;
    let Some(draft) = draft else {
        return Ok(());
    };
    let notification = Notification::from_draft(draft, event);
    if !insert(&notification)? {
        log::debug(&format!("event {} already made its notification", event.id));
        return Ok(());
    }
    let view = notification.view();
    events::publish(
        "notification.sent",
        &Sent {
            notification_id: view.id,
            user_id: view.user_id,
            kind: view.kind,
        },
    )?;
    // A push is a courtesy on top of the stored notification: failing it
    // (say, nsm not granted `push`) must not lose the notification.
    if let Err(err) = realtime::push(view.user_id, &view) {
        log::warn(&format!(
            "could not push notification {} to user {}: {err}",
            view.id, view.user_id
        ));
    }
    Ok(())
}

// --- routes ------------------------------------------------------------------

/// `GET /notifications?limit=`: the caller's newest `limit`, newest first.
pub fn list(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let limit = http::limit(&http::query_params(&request.query))?;
    let rows = db::query(
        &format!(
            "SELECT {}, kind, title, body, read_at, source_event_id FROM notifications
             WHERE owner_user_id = ?1 AND deleted_at IS NULL
             ORDER BY seq DESC LIMIT ?2",
            BaseEntity::COLUMNS
        ),
        &[Value::from(&caller.user_id), Value::from(limit)],
    )?;
    let notifications = rows
        .iter()
        .map(|row| from_row(&row))
        .collect::<Result<Vec<_>, _>>()?;
    let views: Vec<_> = notifications.iter().map(Notification::view).collect();
    Ok(http::json(200, &views))
}

/// `POST /notifications/{id}/read` → 204: sets `readAt` unless it is set;
/// 404 unless the notification is the caller's.
pub fn mark_read(request: &Request, id: &str) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let now = now_rfc3339();
    let changed = db::execute(
        "UPDATE notifications SET read_at = ?3, updated_at = ?3
         WHERE id = ?1 AND owner_user_id = ?2 AND deleted_at IS NULL AND read_at IS NULL",
        &[id.into(), Value::from(&caller.user_id), now.into()],
    )?;
    if changed > 0 {
        return Ok(http::no_content());
    }
    // Nothing changed: already read, or not the caller's.
    let rows = db::query(
        "SELECT 1 AS found FROM notifications
         WHERE id = ?1 AND owner_user_id = ?2 AND deleted_at IS NULL",
        &[id.into(), Value::from(&caller.user_id)],
    )?;
    if rows.is_empty() {
        Err(http::not_found_because("no such notification"))
    } else {
        Ok(http::no_content())
    }
}

// --- storage -----------------------------------------------------------------

/// Stores a new notification; false when its event already made one.
fn insert(notification: &Notification) -> Result<bool, Error> {
    let mut params = notification.base.to_values()?;
    params.extend([
        Value::from(&notification.kind),
        Value::from(&notification.title),
        Value::from(&notification.body),
        Value::from(notification.read_at.clone()),
        Value::from(&notification.source_event_id),
    ]);
    let inserted = db::execute(
        &format!(
            "INSERT INTO notifications ({}, kind, title, body, read_at, source_event_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (source_event_id) DO NOTHING",
            BaseEntity::COLUMNS
        ),
        &params,
    )?;
    Ok(inserted == 1)
}

fn from_row(row: &Row<'_>) -> Result<Notification, Error> {
    Ok(Notification {
        base: BaseEntity::from_row(row)?,
        kind: row.text("kind")?,
        title: row.text("title")?,
        body: row.text("body")?,
        read_at: row.opt_text("read_at")?,
        source_event_id: row.text("source_event_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            id: "e1".into(),
            event_type: "user.registered".into(),
            source: "iam".into(),
            data: r#"{"userId":"u1","username":"ada","orgId":"o1"}"#.into(),
            timestamp: "2026-11-25T10:00:00Z".into(),
            correlation_id: "c1".into(),
            causation_id: None,
        }
    }

    fn sample() -> Notification {
        let draft = compose::compose("user.registered", &event().data)
            .expect("fits")
            .expect("a notification");
        let mut notification = Notification::from_draft(draft, &event());
        notification.base.id = "n1".into();
        notification.base.created_at = "2026-11-25T10:00:01Z".into();
        notification
    }

    #[test]
    fn drafts_become_notifications() {
        let notification = sample();
        assert_eq!(notification.base.owner.user_id, "u1");
        assert_eq!(notification.base.owner.org_id, "o1");
        assert_eq!(notification.source_event_id, "e1");
        assert_eq!(notification.read_at, None);
        assert_eq!(notification.base.context[0]["eventId"], "e1");
    }

    #[test]
    fn the_contract_shape() {
        let notification = sample();
        assert_eq!(
            serde_json::to_value(notification.view()).expect("serialises"),
            json!({"id": "n1", "userId": "u1", "kind": "welcome",
                   "title": notification.title, "body": notification.body,
                   "createdAt": "2026-11-25T10:00:01Z", "readAt": null})
        );
        assert_eq!(
            serde_json::to_value(Sent {
                notification_id: "n1",
                user_id: "u1",
                kind: "welcome"
            })
            .expect("serialises"),
            json!({"notificationId": "n1", "userId": "u1", "kind": "welcome"})
        );
    }

    #[test]
    fn rows_become_notifications() {
        let mut notification = sample();
        notification.read_at = Some("2026-11-25T11:00:00Z".into());
        let mut columns: Vec<String> = BaseEntity::COLUMNS
            .split(',')
            .map(|column| column.trim().to_string())
            .collect();
        columns.extend(["kind", "title", "body", "read_at", "source_event_id"].map(String::from));
        let mut values = notification.base.to_values().expect("values");
        values.extend([
            Value::from(&notification.kind),
            Value::from(&notification.title),
            Value::from(&notification.body),
            Value::from(notification.read_at.clone()),
            Value::from(&notification.source_event_id),
        ]);
        let rows = db::Rows {
            columns,
            rows: vec![values],
        };
        assert_eq!(from_row(&rows.first().expect("a row")), Ok(notification));
    }
}
