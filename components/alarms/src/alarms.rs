//! The `alarms` table, `alarm.created` and `GET /`.
//!
//! An alarm as the list shows it: `{id, alarmId, buildingId, severity,
//! message, orgId, processedBy, createdAt, processedAt}`; `id` is the
//! `alarmId`, `createdAt` the `alarm.created` event's timestamp.

use serde::{Deserialize, Serialize};
use weft_sdk::db::{self, Row, Value};
use weft_sdk::{config, events, http, log, now_rfc3339, Caller, Error, Event, Request, Response};

/// Only ever append: the host remembers how many have run.
///
/// `alarm_id` is UNIQUE, so a redelivered `alarm.created` stores nothing
/// new. `event_id` is the event that brought it; `seq` orders by
/// processing.
pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE alarms (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        alarm_id TEXT NOT NULL UNIQUE,
        building_id TEXT,
        severity TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
        message TEXT NOT NULL,
        org_id TEXT,
        processed_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        processed_at TEXT NOT NULL,
        event_id TEXT NOT NULL
    )",
    "CREATE INDEX alarms_severity ON alarms (severity, seq)",
    "CREATE INDEX alarms_org ON alarms (org_id, seq)",
];

/// How bad an alarm is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(name: &str) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|severity| severity.as_str() == name)
    }
}

/// A processed alarm.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    /// The same as `alarm_id`.
    pub id: String,
    pub alarm_id: String,
    pub building_id: Option<String>,
    pub severity: Severity,
    pub message: String,
    pub org_id: Option<String>,
    /// The replica that processed it.
    pub processed_by: String,
    /// When the alarm was raised (its event's timestamp).
    pub created_at: String,
    pub processed_at: String,
    #[serde(skip)]
    pub event_id: String,
}

/// `alarm.processed` data.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct AlarmProcessed<'a> {
    alarm_id: &'a str,
    building_id: Option<&'a str>,
    severity: Severity,
    processed_by: &'a str,
    org_id: Option<&'a str>,
}

impl<'a> From<&'a Alarm> for AlarmProcessed<'a> {
    fn from(alarm: &'a Alarm) -> AlarmProcessed<'a> {
        AlarmProcessed {
            alarm_id: &alarm.alarm_id,
            building_id: alarm.building_id.as_deref(),
            severity: alarm.severity,
            processed_by: &alarm.processed_by,
            org_id: alarm.org_id.as_deref(),
        }
    }
}

// --- events ------------------------------------------------------------------

/// `alarm.created` data (other fields are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlarmCreated {
    alarm_id: String,
    #[serde(default)]
    building_id: Option<String>,
    severity: Severity,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    org_id: Option<String>,
}

/// The alarm `event` brings, processed by `processed_by` at `now`.
fn from_event(event: &Event, processed_by: String, now: String) -> Result<Alarm, Error> {
    let data: AlarmCreated = events::data(event)?;
    if data.alarm_id.is_empty() {
        return Err(Error::Invalid(format!(
            "`alarm.created` event {} has an empty alarmId",
            event.id
        )));
    }
    Ok(Alarm {
        id: data.alarm_id.clone(),
        alarm_id: data.alarm_id,
        building_id: data.building_id.filter(|id| !id.is_empty()),
        severity: data.severity,
        message: data.message.unwrap_or_default(),
        org_id: data.org_id.filter(|org| !org.is_empty()),
        processed_by,
        created_at: event.timestamp.clone(),
        processed_at: now,
        event_id: event.id.clone(),
    })
}

/// Stores the event's alarm once per alarm id; emits `alarm.processed` only
/// when it was new.
pub fn on_alarm_created(event: &Event) -> Result<(), Error> {
    let alarm = from_event(event, config::instance_id(), now_rfc3339())?;
    if !insert(&alarm)? {
        log::debug(&format!(
            "alarm {} already processed (event {})",
            alarm.alarm_id, event.id
        ));
        return Ok(());
    }
    events::publish("alarm.processed", &AlarmProcessed::from(&alarm))?;
    Ok(())
}

// --- GET / -------------------------------------------------------------------

/// What `GET /` selects, from the query string and the caller.
#[derive(Debug, PartialEq)]
struct Filter {
    severity: Option<Severity>,
    /// Only this org's alarms; `None` for all (admins).
    org_id: Option<String>,
    limit: i64,
}

fn filter(query: &str, caller: &Caller) -> Result<Filter, String> {
    let params = http::query_params(query);
    let limit = http::parse_limit(params.get("limit").map(String::as_str))?;
    let severity = match params.get("severity").map(String::as_str) {
        None | Some("") => None,
        Some(name) => Some(Severity::parse(name).ok_or_else(|| {
            format!("severity must be one of low, medium, high, critical, not {name:?}")
        })?),
    };
    Ok(Filter {
        severity,
        org_id: if http::has_role(caller, "admin") {
            None
        } else {
            Some(caller.org_id.clone())
        },
        limit,
    })
}

/// The SQL and parameters selecting `filter`'s alarms, newest first. An
/// `org_id = ?` condition never matches alarms without an org (NULL), so
/// those are for admins only.
fn select(filter: &Filter) -> (String, Vec<Value>) {
    db::newest_first(
        &format!("SELECT {COLUMNS} FROM alarms"),
        vec![
            (
                "severity = ?",
                filter.severity.map(|s| Value::from(s.as_str())),
            ),
            ("org_id = ?", filter.org_id.as_ref().map(Value::from)),
        ],
        "seq DESC",
        filter.limit,
    )
}

/// `GET /?severity=&limit=` → the caller's visible alarms, newest first.
pub fn list(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let filter =
        filter(&request.query, caller).map_err(|message| http::validation_failed(&message))?;
    let (sql, params) = select(&filter);
    let rows = db::query(&sql, &params)?;
    let alarms = rows
        .iter()
        .map(|row| from_row(&row))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(http::json(200, &alarms))
}

// --- storage -----------------------------------------------------------------

const COLUMNS: &str = "alarm_id, building_id, severity, message, org_id, processed_by, \
                       created_at, processed_at, event_id";

/// Stores a new alarm; false when its alarm id is already stored.
fn insert(alarm: &Alarm) -> Result<bool, Error> {
    let inserted = db::execute(
        &format!(
            "INSERT INTO alarms ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (alarm_id) DO NOTHING"
        ),
        &[
            Value::from(&alarm.alarm_id),
            Value::from(alarm.building_id.clone()),
            Value::from(alarm.severity.as_str()),
            Value::from(&alarm.message),
            Value::from(alarm.org_id.clone()),
            Value::from(&alarm.processed_by),
            Value::from(&alarm.created_at),
            Value::from(&alarm.processed_at),
            Value::from(&alarm.event_id),
        ],
    )?;
    Ok(inserted == 1)
}

fn from_row(row: &Row<'_>) -> Result<Alarm, Error> {
    let alarm_id = row.text("alarm_id")?;
    let severity = row.text("severity")?;
    Ok(Alarm {
        id: alarm_id.clone(),
        alarm_id,
        building_id: row.opt_text("building_id")?,
        severity: Severity::parse(&severity)
            .ok_or_else(|| Error::Invalid(format!("unknown stored severity `{severity}`")))?,
        message: row.text("message")?,
        org_id: row.opt_text("org_id")?,
        processed_by: row.text("processed_by")?,
        created_at: row.text("created_at")?,
        processed_at: row.text("processed_at")?,
        event_id: row.text("event_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: &str) -> Event {
        Event {
            id: "e1".into(),
            event_type: "alarm.created".into(),
            source: "alarms-generator".into(),
            data: data.into(),
            timestamp: "2026-11-25T10:00:00Z".into(),
            correlation_id: "c1".into(),
            causation_id: None,
        }
    }

    fn caller(roles: &[&str]) -> Caller {
        Caller {
            user_id: "u1".into(),
            org_id: "o1".into(),
            roles: roles.iter().map(|role| role.to_string()).collect(),
        }
    }

    fn alarm(data: &str) -> Result<Alarm, Error> {
        from_event(
            &event(data),
            "alarms-1".into(),
            "2026-11-25T10:00:01Z".into(),
        )
    }

    fn sample() -> Alarm {
        alarm(
            r#"{"alarmId":"a1","buildingId":"b1","severity":"high",
                "message":"Smoke detected","orgId":"o1"}"#,
        )
        .expect("valid")
    }

    #[test]
    fn alarms_from_events() {
        let alarm = sample();
        assert_eq!(alarm.id, "a1");
        assert_eq!(alarm.severity, Severity::High);
        assert_eq!(alarm.created_at, "2026-11-25T10:00:00Z");
        assert_eq!(alarm.processed_at, "2026-11-25T10:00:01Z");
        assert_eq!(alarm.event_id, "e1");

        let anonymous = super::tests::alarm(
            r#"{"alarmId":"a2","buildingId":null,"severity":"low","message":"m","orgId":null}"#,
        )
        .expect("valid");
        assert_eq!((anonymous.building_id, anonymous.org_id), (None, None));

        for bad in [
            r#"{"alarmId":"a1","severity":"severe"}"#,
            r#"{"alarmId":"a1","severity":"High"}"#,
            r#"{"alarmId":"a1"}"#,
            r#"{"alarmId":"","severity":"low"}"#,
            r#"{"severity":"low"}"#,
            "nope",
        ] {
            assert!(super::tests::alarm(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_contract_shapes() {
        let alarm = sample();
        assert_eq!(
            serde_json::to_value(&alarm).expect("serialises"),
            json!({"id": "a1", "alarmId": "a1", "buildingId": "b1", "severity": "high",
                   "message": "Smoke detected", "orgId": "o1", "processedBy": "alarms-1",
                   "createdAt": "2026-11-25T10:00:00Z",
                   "processedAt": "2026-11-25T10:00:01Z"})
        );
        assert_eq!(
            serde_json::to_value(AlarmProcessed::from(&alarm)).expect("serialises"),
            json!({"alarmId": "a1", "buildingId": "b1", "severity": "high",
                   "processedBy": "alarms-1", "orgId": "o1"})
        );
    }

    #[test]
    fn severities() {
        for severity in Severity::ALL {
            assert_eq!(Severity::parse(severity.as_str()), Some(severity));
        }
        assert_eq!(Severity::parse("LOW"), None);
        assert_eq!(Severity::parse(""), None);
    }

    #[test]
    fn filters() {
        assert_eq!(
            filter("severity=critical&limit=3", &caller(&["user"])),
            Ok(Filter {
                severity: Some(Severity::Critical),
                org_id: Some("o1".into()),
                limit: 3
            })
        );
        assert_eq!(
            filter("severity=", &caller(&["user", "admin"])),
            Ok(Filter {
                severity: None,
                org_id: None,
                limit: 100
            })
        );
        assert!(filter("severity=severe", &caller(&["user"])).is_err_and(|m| m.contains("severe")));
        assert!(filter("limit=1001", &caller(&["user"])).is_err());
    }

    #[test]
    fn selects() {
        let (sql, params) = select(&Filter {
            severity: Some(Severity::Low),
            org_id: Some("o1".into()),
            limit: 7,
        });
        assert!(sql.ends_with("WHERE severity = ?1 AND org_id = ?2 ORDER BY seq DESC LIMIT ?3"));
        assert_eq!(params, vec!["low".into(), "o1".into(), Value::Integer(7)]);

        let (sql, params) = select(&Filter {
            severity: None,
            org_id: None,
            limit: 100,
        });
        assert!(sql.ends_with("FROM alarms ORDER BY seq DESC LIMIT ?1"));
        assert_eq!(params, vec![Value::Integer(100)]);
    }

    #[test]
    fn rows_become_alarms() {
        let alarm = sample();
        let rows = db::Rows {
            columns: COLUMNS.split(',').map(|c| c.trim().to_string()).collect(),
            rows: vec![vec![
                "a1".into(),
                "b1".into(),
                "high".into(),
                "Smoke detected".into(),
                "o1".into(),
                "alarms-1".into(),
                "2026-11-25T10:00:00Z".into(),
                "2026-11-25T10:00:01Z".into(),
                "e1".into(),
            ]],
        };
        assert_eq!(from_row(&rows.first().expect("a row")), Ok(alarm));
    }
}
