//! The `buildings` table and its routes.
//!
//! A building as the contract shows it: `{id, name, address, orgId,
//! createdAt, workflow: {id, name, buildingId, status}}`.
//!
//! `POST /` asks the workflows component for the building's workflow before
//! it touches the database: the invocation holds its database's writer
//! lease from its first write to its end, and the request may wait up to
//! `workflow_timeout_ms`.

use serde::{Deserialize, Serialize};
use weft_sdk::db::{self, Row, Value};
use weft_sdk::{
    config, events, http, log, messaging, new_id, now_rfc3339, Caller, Error, Request, Response,
};

/// The subject the workflows component serves.
pub const WORKFLOWS_CREATE: &str = "workflows.create";
/// The name of the workflow made for each new building.
pub const WORKFLOW_NAME: &str = "New Workflow";
/// `workflow_timeout_ms` when it is not configured.
pub const DEFAULT_WORKFLOW_TIMEOUT_MS: u32 = 2000;
/// The longest building name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest address, in characters.
pub const MAX_ADDRESS_CHARS: usize = 500;

/// A building's workflow, as the workflows component replied (other reply
/// fields are dropped).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    pub id: String,
    pub name: String,
    pub building_id: String,
    pub status: String,
}

/// A stored building.
#[derive(Clone, Debug, PartialEq)]
pub struct Building {
    pub id: String,
    pub name: String,
    pub address: Option<String>,
    pub org_id: String,
    /// The user who created it.
    pub created_by: String,
    pub created_at: String,
    pub workflow: Workflow,
}

/// A building as the contract shows it.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildingView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub address: Option<&'a str>,
    pub org_id: &'a str,
    pub created_at: &'a str,
    pub workflow: &'a Workflow,
}

impl Building {
    pub fn view(&self) -> BuildingView<'_> {
        BuildingView {
            id: &self.id,
            name: &self.name,
            address: self.address.as_deref(),
            org_id: &self.org_id,
            created_at: &self.created_at,
            workflow: &self.workflow,
        }
    }
}

/// `building.created` data.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildingCreated<'a> {
    building_id: &'a str,
    name: &'a str,
    address: Option<&'a str>,
    org_id: &'a str,
    user_id: &'a str,
    workflow_id: &'a str,
}

impl<'a> From<&'a Building> for BuildingCreated<'a> {
    fn from(building: &'a Building) -> BuildingCreated<'a> {
        BuildingCreated {
            building_id: &building.id,
            name: &building.name,
            address: building.address.as_deref(),
            org_id: &building.org_id,
            user_id: &building.created_by,
            workflow_id: &building.workflow.id,
        }
    }
}

/// The `workflows.create` payload.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateWorkflow<'a> {
    name: &'a str,
    building_id: &'a str,
    org_id: &'a str,
}

// --- input -------------------------------------------------------------------

/// The `POST /` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewBuildingBody {
    name: String,
    #[serde(default)]
    address: Option<String>,
}

/// A valid new building: name trimmed, 1–200 characters; address trimmed,
/// at most 500 characters, `None` when absent or blank.
#[derive(Debug, PartialEq)]
pub struct NewBuilding {
    pub name: String,
    pub address: Option<String>,
}

fn validate(body: NewBuildingBody) -> Result<NewBuilding, String> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err("`name` must not be blank".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "`name` must be at most {MAX_NAME_CHARS} characters"
        ));
    }
    let address = body
        .address
        .as_deref()
        .map(str::trim)
        .filter(|address| !address.is_empty());
    if address.is_some_and(|address| address.chars().count() > MAX_ADDRESS_CHARS) {
        return Err(format!(
            "`address` must be at most {MAX_ADDRESS_CHARS} characters"
        ));
    }
    Ok(NewBuilding {
        name: name.to_string(),
        address: address.map(str::to_string),
    })
}

/// How long to wait for `workflows.create`: config `workflow_timeout_ms`
/// when it is a positive integer, else the default (a bad value is logged).
pub fn workflow_timeout_ms(config: Option<&str>) -> u32 {
    match config.map(str::trim) {
        None | Some("") => DEFAULT_WORKFLOW_TIMEOUT_MS,
        Some(text) => match text.parse::<u32>() {
            Ok(ms) if ms > 0 => ms,
            _ => {
                log::warn(&format!(
                    "config `workflow_timeout_ms` {text:?} is not a positive integer; \
                     using {DEFAULT_WORKFLOW_TIMEOUT_MS}"
                ));
                DEFAULT_WORKFLOW_TIMEOUT_MS
            }
        },
    }
}

/// The workflow in a `workflows.create` reply, checked to be for
/// `building_id`.
fn parse_workflow_reply(reply: &str, building_id: &str) -> Result<Workflow, String> {
    let workflow: Workflow = weft_sdk::from_json_object(reply)
        .map_err(|err| format!("the `{WORKFLOWS_CREATE}` reply is not a workflow: {err}"))?;
    if workflow.id.is_empty() {
        return Err(format!("the `{WORKFLOWS_CREATE}` reply has an empty id"));
    }
    if workflow.building_id != building_id {
        return Err(format!(
            "the `{WORKFLOWS_CREATE}` reply is for building {:?}, not {building_id:?}",
            workflow.building_id
        ));
    }
    Ok(workflow)
}

/// What a failed `workflows.create` answers: the workflows component being
/// away, slow or failing is 503 `upstream_unavailable`; anything else (a
/// payload or grant the host refuses) is our bug, 500.
fn upstream_failure(err: Error) -> Response {
    match err {
        Error::Timeout | Error::NoResponder | Error::Remote(_) | Error::Unavailable(_) => {
            log::warn(&format!("`{WORKFLOWS_CREATE}` failed: {err}"));
            upstream_unavailable()
        }
        other => http::internal(format!("`{WORKFLOWS_CREATE}` failed: {other}")),
    }
}

fn upstream_unavailable() -> Response {
    http::error(
        503,
        "upstream_unavailable",
        "the workflows service did not answer; try again later",
    )
}

// --- routes ------------------------------------------------------------------

/// `POST /` `{name, address?}` → 201 the building with its workflow; emits
/// `building.created`. The workflow is requested before anything is
/// written; without one, 503 and nothing is stored.
pub fn create(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let body: NewBuildingBody = http::parse_json(request)?;
    let input = validate(body).map_err(|message| http::validation_failed(&message))?;
    let id = new_id();
    let workflow = request_workflow(&id, caller)?;
    let building = Building {
        id,
        name: input.name,
        address: input.address,
        org_id: caller.org_id.clone(),
        created_by: caller.user_id.clone(),
        created_at: now_rfc3339(),
        workflow,
    };
    insert(&building).map_err(http::rollback)?;
    events::publish("building.created", &BuildingCreated::from(&building))
        .map_err(http::rollback)?;
    log::info(&format!(
        "created building {} with workflow {} for org {}",
        building.id, building.workflow.id, building.org_id
    ));
    Ok(http::json(201, &building.view()))
}

/// Asks the workflows component for building `building_id`'s workflow.
fn request_workflow(building_id: &str, caller: &Caller) -> Result<Workflow, Response> {
    let timeout = workflow_timeout_ms(config::get("workflow_timeout_ms").as_deref());
    let payload = CreateWorkflow {
        name: WORKFLOW_NAME,
        building_id,
        org_id: &caller.org_id,
    };
    let reply =
        messaging::request_json(WORKFLOWS_CREATE, &payload, timeout).map_err(upstream_failure)?;
    parse_workflow_reply(&reply, building_id).map_err(|message| {
        log::error(&message);
        upstream_unavailable()
    })
}

/// `GET /?limit=`: the caller's org's newest `limit` buildings, newest
/// first.
pub fn list(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let limit = http::limit(&http::query_params(&request.query))?;
    let rows = db::query(
        &format!("SELECT {COLUMNS} FROM buildings WHERE org_id = ?1 ORDER BY seq DESC LIMIT ?2"),
        &[Value::from(&caller.org_id), Value::from(limit)],
    )?;
    let buildings = rows
        .iter()
        .map(|row| from_row(&row))
        .collect::<Result<Vec<_>, _>>()?;
    let views: Vec<_> = buildings.iter().map(Building::view).collect();
    Ok(http::json(200, &views))
}

/// `GET /{id}` → 200, or 404 when it is not in the caller's org (the same
/// whether it does not exist or is another org's).
pub fn get(request: &Request, id: &str) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let rows = db::query(
        &format!("SELECT {COLUMNS} FROM buildings WHERE id = ?1 AND org_id = ?2"),
        &[id.into(), Value::from(&caller.org_id)],
    )?;
    let building = rows
        .first()
        .map(|row| from_row(&row))
        .transpose()?
        .ok_or_else(|| http::not_found_because("no such building"))?;
    Ok(http::json(200, &building.view()))
}

// --- storage -----------------------------------------------------------------

const COLUMNS: &str = "id, name, address, org_id, created_by, created_at, workflow";

fn insert(building: &Building) -> Result<(), Error> {
    db::execute(
        &format!("INSERT INTO buildings ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        &[
            Value::from(&building.id),
            Value::from(&building.name),
            Value::from(building.address.clone()),
            Value::from(&building.org_id),
            Value::from(&building.created_by),
            Value::from(&building.created_at),
            db::json_text(&building.workflow)?,
        ],
    )?;
    Ok(())
}

fn from_row(row: &Row<'_>) -> Result<Building, Error> {
    Ok(Building {
        id: row.text("id")?,
        name: row.text("name")?,
        address: row.opt_text("address")?,
        org_id: row.text("org_id")?,
        created_by: row.text("created_by")?,
        created_at: row.text("created_at")?,
        workflow: row.json("workflow")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &str) -> Result<NewBuilding, String> {
        let body: NewBuildingBody = serde_json::from_str(body).map_err(|err| err.to_string())?;
        validate(body)
    }

    fn sample() -> Building {
        Building {
            id: "b1".into(),
            name: "HQ".into(),
            address: Some("1 Main St".into()),
            org_id: "o1".into(),
            created_by: "u1".into(),
            created_at: "2026-11-25T10:00:00Z".into(),
            workflow: Workflow {
                id: "w1".into(),
                name: WORKFLOW_NAME.into(),
                building_id: "b1".into(),
                status: "pending".into(),
            },
        }
    }

    #[test]
    fn valid_bodies() {
        assert_eq!(
            parse(r#"{"name":"HQ"}"#),
            Ok(NewBuilding {
                name: "HQ".into(),
                address: None
            })
        );
        assert_eq!(
            parse(r#"{"name":"  HQ ","address":" 1 Main St "}"#),
            Ok(NewBuilding {
                name: "HQ".into(),
                address: Some("1 Main St".into())
            })
        );
        assert_eq!(
            parse(r#"{"name":"HQ","address":null}"#).map(|b| b.address),
            Ok(None)
        );
        assert_eq!(
            parse(r#"{"name":"HQ","address":"  "}"#).map(|b| b.address),
            Ok(None)
        );
        let longest = format!(
            r#"{{"name":"{}","address":"{}"}}"#,
            "é".repeat(MAX_NAME_CHARS),
            "a".repeat(MAX_ADDRESS_CHARS)
        );
        assert!(parse(&longest).is_ok());
    }

    #[test]
    fn invalid_bodies() {
        for bad in [
            r#"{}"#,
            r#"{"name":""}"#,
            r#"{"name":"   "}"#,
            r#"{"name":5}"#,
            r#"{"name":"HQ","address":7}"#,
            r#"{"name":"HQ","floors":3}"#,
            r#"{"address":"x"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let long_name = format!(r#"{{"name":"{}"}}"#, "n".repeat(MAX_NAME_CHARS + 1));
        assert!(parse(&long_name).is_err_and(|m| m.contains("name")));
        let long_address = format!(
            r#"{{"name":"HQ","address":"{}"}}"#,
            "a".repeat(MAX_ADDRESS_CHARS + 1)
        );
        assert!(parse(&long_address).is_err_and(|m| m.contains("address")));
    }

    #[test]
    fn timeouts() {
        assert_eq!(workflow_timeout_ms(None), 2000);
        assert_eq!(workflow_timeout_ms(Some("")), 2000);
        assert_eq!(workflow_timeout_ms(Some("250")), 250);
        assert_eq!(workflow_timeout_ms(Some(" 250 ")), 250);
        for bad in ["0", "-5", "1.5", "soon", "99999999999"] {
            assert_eq!(workflow_timeout_ms(Some(bad)), 2000, "{bad}");
        }
    }

    #[test]
    fn the_request_payload() {
        assert_eq!(
            serde_json::to_value(CreateWorkflow {
                name: WORKFLOW_NAME,
                building_id: "b1",
                org_id: "o1"
            })
            .expect("serialises"),
            json!({"name": "New Workflow", "buildingId": "b1", "orgId": "o1"})
        );
    }

    #[test]
    fn workflow_replies() {
        let reply = r#"{"id":"w1","name":"New Workflow","buildingId":"b1","status":"pending",
                        "handledBy":"workflows-2","orgId":"o1","createdAt":"2026-11-25T10:00:00Z"}"#;
        assert_eq!(parse_workflow_reply(reply, "b1"), Ok(sample().workflow));
        assert!(parse_workflow_reply(reply, "b2").is_err_and(|m| m.contains("b2")));
        assert!(parse_workflow_reply("not json", "b1").is_err());
        assert!(parse_workflow_reply(r#"{"id":"w1"}"#, "b1").is_err());
        assert!(parse_workflow_reply(
            r#"{"id":"","name":"n","buildingId":"b1","status":"pending"}"#,
            "b1"
        )
        .is_err());
    }

    #[test]
    fn upstream_failures() {
        for err in [
            Error::Timeout,
            Error::NoResponder,
            Error::Remote("boom".into()),
            Error::Unavailable("bus down".into()),
        ] {
            let response = upstream_failure(err);
            assert_eq!(response.status, 503);
            let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
            assert_eq!(body["error"]["code"], "upstream_unavailable");
        }
        assert_eq!(upstream_failure(Error::Invalid("bad".into())).status, 500);
        assert_eq!(upstream_failure(Error::Denied("no".into())).status, 500);
    }

    #[test]
    fn the_contract_shape() {
        let building = sample();
        assert_eq!(
            serde_json::to_value(building.view()).expect("serialises"),
            json!({"id": "b1", "name": "HQ", "address": "1 Main St", "orgId": "o1",
                   "createdAt": "2026-11-25T10:00:00Z",
                   "workflow": {"id": "w1", "name": "New Workflow", "buildingId": "b1",
                                "status": "pending"}})
        );
        let mut no_address = sample();
        no_address.address = None;
        assert_eq!(
            serde_json::to_value(no_address.view()).expect("serialises")["address"],
            json!(null)
        );
        assert_eq!(
            serde_json::to_value(BuildingCreated::from(&building)).expect("serialises"),
            json!({"buildingId": "b1", "name": "HQ", "address": "1 Main St", "orgId": "o1",
                   "userId": "u1", "workflowId": "w1"})
        );
    }

    #[test]
    fn rows_become_buildings() {
        let building = sample();
        let rows = db::Rows {
            columns: COLUMNS.split(", ").map(String::from).collect(),
            rows: vec![vec![
                "b1".into(),
                "HQ".into(),
                "1 Main St".into(),
                "o1".into(),
                "u1".into(),
                "2026-11-25T10:00:00Z".into(),
                db::json_text(&building.workflow).expect("serialises"),
            ]],
        };
        assert_eq!(from_row(&rows.first().expect("a row")), Ok(building));
    }
}
