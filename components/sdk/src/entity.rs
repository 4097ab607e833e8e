//! The base entity that every record of the original system carries: an
//! id, an owner, free-form attributes and metadata, a context trail,
//! timestamps, and a soft-delete marker.
//!
//! Serialised in camelCase:
//! `{"id", "owner": {"userId", "orgId"}, "attributes", "metadata",
//! "context", "createdAt", "updatedAt", "deletedAt"}`.
//!
//! Stored as the columns [`BaseEntity::COLUMNS`]; a table that holds
//! entities starts with them (attributes, metadata and context as JSON text):
//!
//! ```sql
//! id TEXT NOT NULL UNIQUE,   -- or PRIMARY KEY
//! owner_user_id TEXT NOT NULL,
//! owner_org_id TEXT NOT NULL,
//! attributes TEXT NOT NULL DEFAULT '{}',
//! metadata TEXT NOT NULL DEFAULT '{}',
//! context TEXT NOT NULL DEFAULT '[]',
//! created_at TEXT NOT NULL,
//! updated_at TEXT NOT NULL,
//! deleted_at TEXT
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::db::{self, Row};
use crate::{new_id, now_rfc3339, Error};

/// Who owns a record: a user within an organisation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub user_id: String,
    pub org_id: String,
}

/// The fields shared by every record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseEntity {
    /// A UUID v7 (see [`crate::new_id`]).
    pub id: String,
    pub owner: Owner,
    /// Business attributes, free-form.
    #[serde(default)]
    pub attributes: Map<String, Value>,
    /// Technical metadata (sources, tags), free-form.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// A trail of context entries (what caused or touched the record),
    /// oldest first.
    #[serde(default)]
    pub context: Vec<Value>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC; changes with every modification.
    pub updated_at: String,
    /// Set when the record is soft-deleted; `None` while it is live.
    pub deleted_at: Option<String>,
}

impl BaseEntity {
    /// The entity's columns, in the order of [`BaseEntity::to_values`].
    pub const COLUMNS: &'static str = "id, owner_user_id, owner_org_id, attributes, metadata, \
                                       context, created_at, updated_at, deleted_at";

    /// The values of [`BaseEntity::COLUMNS`], as SQL parameters `?1`…`?9`.
    pub fn to_values(&self) -> Result<Vec<db::Value>, Error> {
        Ok(vec![
            db::Value::from(&self.id),
            db::Value::from(&self.owner.user_id),
            db::Value::from(&self.owner.org_id),
            db::json_text(&self.attributes)?,
            db::json_text(&self.metadata)?,
            db::json_text(&self.context)?,
            db::Value::from(&self.created_at),
            db::Value::from(&self.updated_at),
            db::Value::from(self.deleted_at.clone()),
        ])
    }

    /// The entity stored in `row`'s [`BaseEntity::COLUMNS`].
    pub fn from_row(row: &Row<'_>) -> Result<BaseEntity, Error> {
        Ok(BaseEntity {
            id: row.text("id")?,
            owner: Owner {
                user_id: row.text("owner_user_id")?,
                org_id: row.text("owner_org_id")?,
            },
            attributes: row.json("attributes")?,
            metadata: row.json("metadata")?,
            context: row.json("context")?,
            created_at: row.text("created_at")?,
            updated_at: row.text("updated_at")?,
            deleted_at: row.opt_text("deleted_at")?,
        })
    }

    /// A new live entity with a fresh id, owned by `owner`, created now.
    pub fn new(owner: Owner) -> BaseEntity {
        BaseEntity::with_id(new_id(), owner)
    }

    /// A new live entity with the given id, owned by `owner`, created now.
    pub fn with_id(id: String, owner: Owner) -> BaseEntity {
        let now = now_rfc3339();
        BaseEntity {
            id,
            owner,
            attributes: Map::new(),
            metadata: Map::new(),
            context: Vec::new(),
            created_at: now.clone(),
            updated_at: now,
            deleted_at: None,
        }
    }

    /// Sets attribute `key` and touches `updated_at`.
    pub fn set_attribute(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.attributes.insert(key.into(), value.into());
        self.touch();
    }

    /// Sets metadata `key` and touches `updated_at`.
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.metadata.insert(key.into(), value.into());
        self.touch();
    }

    /// Appends an entry to the context trail and touches `updated_at`.
    pub fn add_context(&mut self, entry: impl Into<Value>) {
        self.context.push(entry.into());
        self.touch();
    }

    /// Marks the entity deleted now (it stays stored). Deleting twice keeps
    /// the first time.
    pub fn soft_delete(&mut self) {
        if self.deleted_at.is_none() {
            let now = now_rfc3339();
            self.deleted_at = Some(now.clone());
            self.updated_at = now;
        }
    }

    /// Whether the entity is soft-deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    fn touch(&mut self) {
        self.updated_at = now_rfc3339();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner() -> Owner {
        Owner {
            user_id: "u1".into(),
            org_id: "o1".into(),
        }
    }

    #[test]
    fn new_entity_is_live_and_fresh() {
        let entity = BaseEntity::new(owner());
        assert_eq!(entity.id.len(), 36);
        assert_eq!(entity.created_at, entity.updated_at);
        assert!(!entity.is_deleted());
    }

    #[test]
    fn setters_and_soft_delete() {
        let mut entity = BaseEntity::with_id("e1".into(), owner());
        entity.set_attribute("color", "blue");
        entity.set_metadata("source", json!({"import": 3}));
        entity.add_context(json!({"event": "user.registered"}));
        assert_eq!(entity.attributes["color"], "blue");
        assert_eq!(entity.metadata["source"]["import"], 3);
        assert_eq!(entity.context.len(), 1);

        entity.soft_delete();
        let first = entity.deleted_at.clone();
        assert!(entity.is_deleted());
        entity.soft_delete();
        assert_eq!(entity.deleted_at, first);
    }

    #[test]
    fn round_trips_through_columns() {
        let mut entity = BaseEntity::with_id("e1".into(), owner());
        entity.set_attribute("color", "blue");
        entity.add_context(json!({"event": "e9"}));
        entity.soft_delete();
        let columns: Vec<String> = BaseEntity::COLUMNS
            .split(',')
            .map(|column| column.trim().to_string())
            .collect();
        let values = entity.to_values().expect("values");
        assert_eq!(columns.len(), values.len());
        let rows = db::Rows {
            columns,
            rows: vec![values],
        };
        let back = BaseEntity::from_row(&rows.first().expect("a row")).expect("an entity");
        assert_eq!(back, entity);
    }

    #[test]
    fn serialises_in_camel_case() {
        let mut entity = BaseEntity::with_id("e1".into(), owner());
        entity.created_at = "2026-11-25T10:00:00Z".into();
        entity.updated_at = "2026-11-25T10:00:00Z".into();
        let value = serde_json::to_value(&entity).expect("serialises");
        assert_eq!(
            value,
            json!({
                "id": "e1", "owner": {"userId": "u1", "orgId": "o1"},
                "attributes": {}, "metadata": {}, "context": [],
                "createdAt": "2026-11-25T10:00:00Z", "updatedAt": "2026-11-25T10:00:00Z",
                "deletedAt": null
            })
        );
        let back: BaseEntity = serde_json::from_value(value).expect("deserialises");
        assert_eq!(back, entity);
    }
}
