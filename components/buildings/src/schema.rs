//! The buildings component's tables. Only ever append to [`MIGRATIONS`]:
//! the host remembers how many have run.
//!
//! - `buildings`: one row per building. `org_id` scopes reads, `created_by`
//!   is the user who created it, `workflow` is the workflow made for it
//!   (JSON `{id, name, buildingId, status}`). `seq` orders by creation.

pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE buildings (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        address TEXT,
        org_id TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        workflow TEXT NOT NULL
    )",
    "CREATE INDEX buildings_org ON buildings (org_id, seq)",
];
