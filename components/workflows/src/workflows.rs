//! The `workflows` table, `workflows.create` and `GET /`.
//!
//! A workflow as the reply and the list show it: `{id, name, buildingId,
//! status, handledBy, orgId, createdAt}` (`orgId` null when the request
//! gave none).

use serde::{Deserialize, Serialize};
use weft_sdk::db::{self, Row, Value};
use weft_sdk::{config, events, http, log, new_id, now_rfc3339, Caller, Error, Request, Response};

/// The subject this component serves.
pub const CREATE_SUBJECT: &str = "workflows.create";
/// The status of a new workflow.
pub const PENDING: &str = "pending";
/// The longest workflow name and building id accepted, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

/// Only ever append: the host remembers how many have run.
///
/// `handled_by` is the replica that created the workflow; `org_id` is NULL
/// when the request gave none. `seq` orders by creation.
pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE workflows (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        building_id TEXT NOT NULL,
        org_id TEXT,
        status TEXT NOT NULL,
        handled_by TEXT NOT NULL,
        created_at TEXT NOT NULL
    )",
    "CREATE INDEX workflows_building ON workflows (building_id, seq)",
    "CREATE INDEX workflows_org ON workflows (org_id, seq)",
];

/// A stored workflow.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    pub id: String,
    pub name: String,
    pub building_id: String,
    pub status: String,
    pub handled_by: String,
    pub org_id: Option<String>,
    pub created_at: String,
}

/// `workflow.created` data.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkflowCreated<'a> {
    workflow_id: &'a str,
    building_id: &'a str,
    name: &'a str,
    status: &'a str,
    handled_by: &'a str,
    org_id: Option<&'a str>,
}

impl<'a> From<&'a Workflow> for WorkflowCreated<'a> {
    fn from(workflow: &'a Workflow) -> WorkflowCreated<'a> {
        WorkflowCreated {
            workflow_id: &workflow.id,
            building_id: &workflow.building_id,
            name: &workflow.name,
            status: &workflow.status,
            handled_by: &workflow.handled_by,
            org_id: workflow.org_id.as_deref(),
        }
    }
}

// --- workflows.create --------------------------------------------------------

/// The `workflows.create` payload; other fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatePayload {
    name: String,
    building_id: String,
    #[serde(default)]
    org_id: Option<String>,
}

/// A valid `workflows.create` request.
#[derive(Debug, PartialEq)]
pub struct NewWorkflow {
    pub name: String,
    pub building_id: String,
    /// `None` when absent, null or empty.
    pub org_id: Option<String>,
}

/// Parses and checks a `workflows.create` payload: `name` (trimmed) and
/// `buildingId` 1–200 characters, `orgId` optional.
pub fn parse_create(payload: &str) -> Result<NewWorkflow, String> {
    let payload: CreatePayload = weft_sdk::from_json_object(payload)
        .map_err(|err| format!("`{CREATE_SUBJECT}` payload does not fit: {err}"))?;
    let name = payload.name.trim();
    if name.is_empty() || name.chars().count() > MAX_FIELD_CHARS {
        return Err(format!(
            "`{CREATE_SUBJECT}` payload: `name` must be 1 to {MAX_FIELD_CHARS} characters"
        ));
    }
    let building_id = payload.building_id.trim();
    if building_id.is_empty() || building_id.chars().count() > MAX_FIELD_CHARS {
        return Err(format!(
            "`{CREATE_SUBJECT}` payload: `buildingId` must be 1 to {MAX_FIELD_CHARS} characters"
        ));
    }
    Ok(NewWorkflow {
        name: name.to_string(),
        building_id: building_id.to_string(),
        org_id: payload.org_id.filter(|org| !org.is_empty()),
    })
}

/// `workflows.create`: stores a pending workflow handled by this replica,
/// emits `workflow.created` and replies with the workflow as JSON.
pub fn on_create(payload: &str) -> Result<String, Error> {
    let input = parse_create(payload).map_err(Error::Invalid)?;
    let workflow = Workflow {
        id: new_id(),
        name: input.name,
        building_id: input.building_id,
        status: PENDING.to_string(),
        handled_by: config::instance_id(),
        org_id: input.org_id,
        created_at: now_rfc3339(),
    };
    insert(&workflow)?;
    events::publish("workflow.created", &WorkflowCreated::from(&workflow))?;
    log::info(&format!(
        "created workflow {} for building {} on {}",
        workflow.id, workflow.building_id, workflow.handled_by
    ));
    serde_json::to_string(&workflow)
        .map_err(|err| Error::Invalid(format!("cannot serialise a workflow: {err}")))
}

// --- GET / -------------------------------------------------------------------

/// What `GET /` selects, from the query string and the caller.
#[derive(Debug, PartialEq)]
struct Filter {
    building_id: Option<String>,
    /// Only this org's workflows (and those without an org); `None` for all.
    org_id: Option<String>,
    limit: i64,
}

fn filter(query: &str, caller: &Caller) -> Result<Filter, String> {
    let params = http::query_params(query);
    let limit = http::parse_limit(params.get("limit").map(String::as_str))?;
    Ok(Filter {
        building_id: params
            .get("buildingId")
            .filter(|id| !id.is_empty())
            .cloned(),
        org_id: if http::has_role(caller, "admin") {
            None
        } else {
            Some(caller.org_id.clone())
        },
        limit,
    })
}

/// The SQL and parameters selecting `filter`'s workflows, newest first.
fn select(filter: &Filter) -> (String, Vec<Value>) {
    db::newest_first(
        &format!("SELECT {COLUMNS} FROM workflows"),
        vec![
            (
                "building_id = ?",
                filter.building_id.as_ref().map(Value::from),
            ),
            (
                "(org_id IS NULL OR org_id = ?)",
                filter.org_id.as_ref().map(Value::from),
            ),
        ],
        "seq DESC",
        filter.limit,
    )
}

/// `GET /?buildingId=&limit=` → the caller's visible workflows, newest
/// first.
pub fn list(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let filter =
        filter(&request.query, caller).map_err(|message| http::validation_failed(&message))?;
    let (sql, params) = select(&filter);
    let rows = db::query(&sql, &params)?;
    let workflows = rows
        .iter()
        .map(|row| from_row(&row))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(http::json(200, &workflows))
}

// --- storage -----------------------------------------------------------------

const COLUMNS: &str = "id, name, building_id, org_id, status, handled_by, created_at";

fn insert(workflow: &Workflow) -> Result<(), Error> {
    db::execute(
        &format!("INSERT INTO workflows ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        &[
            Value::from(&workflow.id),
            Value::from(&workflow.name),
            Value::from(&workflow.building_id),
            Value::from(workflow.org_id.clone()),
            Value::from(&workflow.status),
            Value::from(&workflow.handled_by),
            Value::from(&workflow.created_at),
        ],
    )?;
    Ok(())
}

fn from_row(row: &Row<'_>) -> Result<Workflow, Error> {
    Ok(Workflow {
        id: row.text("id")?,
        name: row.text("name")?,
        building_id: row.text("building_id")?,
        org_id: row.opt_text("org_id")?,
        status: row.text("status")?,
        handled_by: row.text("handled_by")?,
        created_at: row.text("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caller(roles: &[&str]) -> Caller {
        Caller {
            user_id: "u1".into(),
            org_id: "o1".into(),
            roles: roles.iter().map(|role| role.to_string()).collect(),
        }
    }

    fn sample() -> Workflow {
        Workflow {
            id: "w1".into(),
            name: "New Workflow".into(),
            building_id: "b1".into(),
            status: PENDING.into(),
            handled_by: "workflows-2".into(),
            org_id: Some("o1".into()),
            created_at: "2026-11-25T10:00:00Z".into(),
        }
    }

    #[test]
    fn create_payloads() {
        assert_eq!(
            parse_create(r#"{"name":"New Workflow","buildingId":"b1","orgId":"o1"}"#),
            Ok(NewWorkflow {
                name: "New Workflow".into(),
                building_id: "b1".into(),
                org_id: Some("o1".into())
            })
        );
        for without_org in [
            r#"{"name":"n","buildingId":"b1"}"#,
            r#"{"name":"n","buildingId":"b1","orgId":null}"#,
            r#"{"name":"n","buildingId":"b1","orgId":""}"#,
        ] {
            assert_eq!(parse_create(without_org).map(|w| w.org_id), Ok(None));
        }
        assert!(parse_create(r#"{"name":"n","buildingId":"b1","extra":1}"#).is_ok());
        for bad in [
            "",
            "nope",
            "[]",
            r#"{}"#,
            r#"{"name":"n"}"#,
            r#"{"buildingId":"b1"}"#,
            r#"{"name":" ","buildingId":"b1"}"#,
            r#"{"name":"n","buildingId":""}"#,
            r#"{"name":"n","buildingId":5}"#,
            r#"{"name":"n","buildingId":"b1","orgId":5}"#,
        ] {
            assert!(parse_create(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"name":"{}","buildingId":"b1"}}"#, "n".repeat(201));
        assert!(parse_create(&long).is_err_and(|m| m.contains("name")));
    }

    #[test]
    fn the_reply_and_event_shapes() {
        let workflow = sample();
        assert_eq!(
            serde_json::to_value(&workflow).expect("serialises"),
            json!({"id": "w1", "name": "New Workflow", "buildingId": "b1", "status": "pending",
                   "handledBy": "workflows-2", "orgId": "o1",
                   "createdAt": "2026-11-25T10:00:00Z"})
        );
        assert_eq!(
            serde_json::to_value(WorkflowCreated::from(&workflow)).expect("serialises"),
            json!({"workflowId": "w1", "buildingId": "b1", "name": "New Workflow",
                   "status": "pending", "handledBy": "workflows-2", "orgId": "o1"})
        );
    }

    #[test]
    fn filters() {
        assert_eq!(
            filter("buildingId=b1&limit=5", &caller(&["user"])),
            Ok(Filter {
                building_id: Some("b1".into()),
                org_id: Some("o1".into()),
                limit: 5
            })
        );
        assert_eq!(
            filter("buildingId=", &caller(&["user", "admin"])),
            Ok(Filter {
                building_id: None,
                org_id: None,
                limit: 100
            })
        );
        assert!(filter("limit=0", &caller(&["user"])).is_err());
        assert!(filter("limit=x", &caller(&["user"])).is_err());
    }

    #[test]
    fn selects() {
        let (sql, params) = select(&Filter {
            building_id: Some("b1".into()),
            org_id: Some("o1".into()),
            limit: 5,
        });
        assert!(sql.ends_with(
            "WHERE building_id = ?1 AND (org_id IS NULL OR org_id = ?2) ORDER BY seq DESC LIMIT ?3"
        ));
        assert_eq!(params, vec!["b1".into(), "o1".into(), Value::Integer(5)]);

        let (sql, params) = select(&Filter {
            building_id: None,
            org_id: None,
            limit: 100,
        });
        assert!(sql.ends_with("FROM workflows ORDER BY seq DESC LIMIT ?1"));
        assert_eq!(params, vec![Value::Integer(100)]);
    }

    #[test]
    fn rows_become_workflows() {
        let workflow = sample();
        let rows = db::Rows {
            columns: COLUMNS.split(", ").map(String::from).collect(),
            rows: vec![vec![
                "w1".into(),
                "New Workflow".into(),
                "b1".into(),
                Value::Null,
                "pending".into(),
                "workflows-2".into(),
                "2026-11-25T10:00:00Z".into(),
            ]],
        };
        assert_eq!(
            from_row(&rows.first().expect("a row")),
            Ok(Workflow {
                org_id: None,
                ..workflow
            })
        );
    }
}
