//! The known buildings and the alarms made up for them.

use serde::{Deserialize, Serialize};
use weft_sdk::db::{self, Value};
use weft_sdk::{events, log, new_id, now_rfc3339, random, Error, Event};

/// The timer that makes one alarm per tick.
pub const GENERATE_TIMER: &str = "generate";

/// Alarm severities, in rising order. Four, so a random byte picks each
/// equally often.
pub const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// What an alarm may say.
pub const MESSAGES: [&str; 8] = [
    "Temperature threshold exceeded",
    "Humidity out of range",
    "Smoke detected",
    "Door left open",
    "Power supply fluctuation",
    "Water leak detected",
    "CO2 level high",
    "HVAC unit not responding",
];

/// Only ever append: the host remembers how many have run.
///
/// `known_buildings`: one row per building heard of in `building.created`;
/// the primary key makes a redelivered event a no-op.
pub const MIGRATIONS: &[&str] = &["CREATE TABLE known_buildings (
        building_id TEXT PRIMARY KEY,
        org_id TEXT,
        seen_at TEXT NOT NULL
    )"];

/// A building heard of.
#[derive(Clone, Debug, PartialEq)]
pub struct KnownBuilding {
    pub building_id: String,
    pub org_id: Option<String>,
}

/// `alarm.created` data.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmCreated {
    pub alarm_id: String,
    pub building_id: Option<String>,
    pub severity: &'static str,
    pub message: &'static str,
    pub org_id: Option<String>,
}

/// The alarm that random bytes `random` make for `building` (none known:
/// no building, no org): byte 0 picks the severity, byte 1 the message.
pub fn compose(alarm_id: String, random: [u8; 2], building: Option<KnownBuilding>) -> AlarmCreated {
    let (building_id, org_id) = match building {
        Some(known) => (Some(known.building_id), known.org_id),
        None => (None, None),
    };
    AlarmCreated {
        alarm_id,
        building_id,
        severity: severity(random[0]),
        message: message(random[1]),
        org_id,
    }
}

/// The severity a random byte picks: its value modulo 4.
pub fn severity(byte: u8) -> &'static str {
    random::pick(&SEVERITIES, byte).copied().unwrap_or("low")
}

/// The message a random byte picks: its value modulo the list's length.
pub fn message(byte: u8) -> &'static str {
    random::pick(&MESSAGES, byte)
        .copied()
        .unwrap_or("Threshold exceeded")
}

// --- events ------------------------------------------------------------------

/// `building.created` data (other fields are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuildingCreated {
    building_id: String,
    #[serde(default)]
    org_id: Option<String>,
}

fn parse_building(event: &Event) -> Result<KnownBuilding, Error> {
    let data: BuildingCreated = events::data(event)?;
    if data.building_id.is_empty() {
        return Err(Error::Invalid(format!(
            "`building.created` event {} has an empty buildingId",
            event.id
        )));
    }
    Ok(KnownBuilding {
        building_id: data.building_id,
        org_id: data.org_id.filter(|org| !org.is_empty()),
    })
}

/// Remembers the event's building, once per building id.
pub fn on_building_created(event: &Event) -> Result<(), Error> {
    let building = parse_building(event)?;
    let inserted = db::execute(
        "INSERT INTO known_buildings (building_id, org_id, seen_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (building_id) DO NOTHING",
        &[
            Value::from(&building.building_id),
            Value::from(building.org_id.clone()),
            now_rfc3339().into(),
        ],
    )?;
    if inserted == 1 {
        log::info(&format!(
            "now generating alarms for building {}",
            building.building_id
        ));
    } else {
        log::debug(&format!(
            "building {} already known (event {})",
            building.building_id, event.id
        ));
    }
    Ok(())
}

// --- the timer ---------------------------------------------------------------

/// One tick of `generate`: emits one `alarm.created`.
pub fn generate() -> Result<(), Error> {
    let bytes: [u8; 10] = random::bytes()?;
    let [severity_byte, message_byte, index @ ..] = bytes;
    let building = random_building(index)?;
    let alarm = compose(new_id(), [severity_byte, message_byte], building);
    events::publish("alarm.created", &alarm)?;
    log::debug(&format!(
        "alarm {} ({}) for building {:?}",
        alarm.alarm_id, alarm.severity, alarm.building_id
    ));
    Ok(())
}

/// A known building picked by eight random bytes, or `None` when none is
/// known.
fn random_building(bytes: [u8; 8]) -> Result<Option<KnownBuilding>, Error> {
    let rows = db::query("SELECT COUNT(*) AS known FROM known_buildings", &[])?;
    let known = rows.first().map(|row| row.int("known")).transpose()?;
    let count = known.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let Some(offset) = random::index(count, bytes) else {
        return Ok(None);
    };
    let offset =
        i64::try_from(offset).map_err(|_| Error::Invalid("building offset out of range".into()))?;
    let rows = db::query(
        "SELECT building_id, org_id FROM known_buildings ORDER BY building_id LIMIT 1 OFFSET ?1",
        &[offset.into()],
    )?;
    rows.first()
        .map(|row| {
            Ok(KnownBuilding {
                building_id: row.text("building_id")?,
                org_id: row.opt_text("org_id")?,
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: &str) -> Event {
        Event {
            id: "e1".into(),
            event_type: "building.created".into(),
            source: "buildings".into(),
            data: data.into(),
            timestamp: "2026-11-25T10:00:00Z".into(),
            correlation_id: "c1".into(),
            causation_id: None,
        }
    }

    #[test]
    fn severities_from_bytes() {
        assert_eq!(severity(0), "low");
        assert_eq!(severity(1), "medium");
        assert_eq!(severity(2), "high");
        assert_eq!(severity(3), "critical");
        assert_eq!(severity(4), "low");
        assert_eq!(severity(255), "critical");
        // Every severity equally often over all bytes.
        for name in SEVERITIES {
            assert_eq!((0..=255_u8).filter(|&b| severity(b) == name).count(), 64);
        }
    }

    #[test]
    fn messages_from_bytes() {
        assert_eq!(message(0), "Temperature threshold exceeded");
        assert_eq!(message(8), "Temperature threshold exceeded");
        assert_eq!(message(7), "HVAC unit not responding");
        assert!((0..=255_u8).all(|b| MESSAGES.contains(&message(b))));
    }

    #[test]
    fn alarms_with_and_without_a_building() {
        let known = KnownBuilding {
            building_id: "b1".into(),
            org_id: Some("o1".into()),
        };
        assert_eq!(
            serde_json::to_value(compose("a1".into(), [3, 2], Some(known))).expect("serialises"),
            json!({"alarmId": "a1", "buildingId": "b1", "severity": "critical",
                   "message": "Smoke detected", "orgId": "o1"})
        );
        assert_eq!(
            serde_json::to_value(compose("a2".into(), [0, 0], None)).expect("serialises"),
            json!({"alarmId": "a2", "buildingId": null, "severity": "low",
                   "message": "Temperature threshold exceeded", "orgId": null})
        );
    }

    #[test]
    fn building_events() {
        assert_eq!(
            parse_building(&event(
                r#"{"buildingId":"b1","name":"HQ","address":null,"orgId":"o1","userId":"u1","workflowId":"w1"}"#
            )),
            Ok(KnownBuilding {
                building_id: "b1".into(),
                org_id: Some("o1".into())
            })
        );
        assert_eq!(
            parse_building(&event(r#"{"buildingId":"b1"}"#)).map(|b| b.org_id),
            Ok(None)
        );
        assert!(parse_building(&event(r#"{"buildingId":""}"#)).is_err());
        assert!(parse_building(&event(r#"{"name":"HQ"}"#)).is_err());
        assert!(parse_building(&event("nope")).is_err());
    }
}
