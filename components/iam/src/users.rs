//! The `users` table: the base entity's columns plus the account's own.

use weft_sdk::db::{self, Row, Value};
use weft_sdk::entity::BaseEntity;
use weft_sdk::Error;

/// Only ever append: the host remembers how many have run.
pub const MIGRATIONS: &[&str] = &[
    "CREATE TABLE users (
        id TEXT PRIMARY KEY,
        owner_user_id TEXT NOT NULL,
        owner_org_id TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}',
        metadata TEXT NOT NULL DEFAULT '{}',
        context TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT,
        username TEXT NOT NULL,
        email TEXT NOT NULL,
        password_hash TEXT NOT NULL
    )",
    // Usernames and emails are ASCII (see `register`), so NOCASE compares
    // them case-insensitively in full.
    "CREATE UNIQUE INDEX users_username_key ON users (username COLLATE NOCASE)",
    "CREATE UNIQUE INDEX users_email_key ON users (email COLLATE NOCASE)",
    "CREATE INDEX users_org ON users (owner_org_id)",
    // Roles are stored, never derived from the username alone.
    r#"ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT '["user"]'"#,
    // Accounts from before: each org's first user founded it.
    r#"UPDATE users SET roles = '["user","org_admin"]' WHERE NOT EXISTS (
        SELECT 1 FROM users o WHERE o.owner_org_id = users.owner_org_id
        AND (o.created_at < users.created_at OR (o.created_at = users.created_at AND o.id < users.id)))"#,
    crate::invitations::MIGRATION,
    crate::sessions::MIGRATIONS[0],
    crate::sessions::MIGRATIONS[1],
    crate::sessions::MIGRATIONS[2],
];

/// A user account. `base.id` is the user id; `base.owner` is the user in
/// their organisation.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub base: BaseEntity,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    /// Stored roles (`user`, `org_admin`, `admin`); see `roles::for_user`.
    pub roles: Vec<String>,
}

/// How a login or a token names a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// By username, case-insensitively.
    Username(&'a str),
    /// By email, case-insensitively.
    Email(&'a str),
    /// By id (a token's `sub`).
    Id(&'a str),
}

/// Which of `username` and `email` an existing account (deleted ones
/// included) already holds, compared case-insensitively.
pub fn taken(username: &str, email: &str) -> Result<Option<Taken>, Error> {
    let rows = db::query(
        "SELECT username = ?1 COLLATE NOCASE AS same_username FROM users
         WHERE username = ?1 COLLATE NOCASE OR email = ?2 COLLATE NOCASE
         ORDER BY same_username DESC LIMIT 1",
        &[username.into(), email.into()],
    )?;
    match rows.first() {
        None => Ok(None),
        Some(row) if row.int("same_username")? != 0 => Ok(Some(Taken::Username)),
        Some(_) => Ok(Some(Taken::Email)),
    }
}

/// What makes a registration a conflict.
#[derive(Debug, PartialEq)]
pub enum Taken {
    Username,
    Email,
}

/// Stores a new user. A username or email taken meanwhile is
/// [`Error::Conflict`].
pub fn insert(user: &User) -> Result<(), Error> {
    let mut params = user.base.to_values()?;
    params.extend([
        Value::from(&user.username),
        Value::from(&user.email),
        Value::from(&user.password_hash),
        db::json_text(&user.roles)?,
    ]);
    db::execute(
        &format!(
            "INSERT INTO users ({}, username, email, password_hash, roles)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            BaseEntity::COLUMNS
        ),
        &params,
    )?;
    Ok(())
}

/// The live (not soft-deleted) user named by `lookup`.
pub fn find_live(lookup: Lookup<'_>) -> Result<Option<User>, Error> {
    find_with(db::query, lookup)
}

/// As [`find_live`], from what is committed, without waiting for the
/// database's writer (a login checks the password before it writes).
pub fn find_live_committed(lookup: Lookup<'_>) -> Result<Option<User>, Error> {
    find_with(db::query_committed, lookup)
}

fn find_with(
    query: fn(&str, &[Value]) -> Result<db::Rows, Error>,
    lookup: Lookup<'_>,
) -> Result<Option<User>, Error> {
    let (condition, value) = match lookup {
        Lookup::Username(username) => ("username = ?1 COLLATE NOCASE", username),
        Lookup::Email(email) => ("email = ?1 COLLATE NOCASE", email),
        Lookup::Id(id) => ("id = ?1", id),
    };
    let rows = query(
        &format!(
            "SELECT {}, username, email, password_hash, roles FROM users
             WHERE {condition} AND deleted_at IS NULL",
            BaseEntity::COLUMNS
        ),
        &[value.into()],
    )?;
    rows.first().map(|row| from_row(&row)).transpose()
}

/// Stores `user`'s password hash, metadata and `updated_at`.
pub fn update_password(user: &User) -> Result<(), Error> {
    let changed = db::execute(
        "UPDATE users SET password_hash = ?2, metadata = ?3, updated_at = ?4 WHERE id = ?1",
        &[
            Value::from(&user.base.id),
            Value::from(&user.password_hash),
            db::json_text(&user.base.metadata)?,
            Value::from(&user.base.updated_at),
        ],
    )?;
    if changed == 1 {
        Ok(())
    } else {
        Err(Error::NotFound(format!("user {} is gone", user.base.id)))
    }
}

fn from_row(row: &Row<'_>) -> Result<User, Error> {
    Ok(User {
        base: BaseEntity::from_row(row)?,
        username: row.text("username")?,
        email: row.text("email")?,
        password_hash: row.text("password_hash")?,
        roles: serde_json::from_str(&row.text("roles")?)
            .map_err(|err| Error::Invalid(format!("stored roles: {err}")))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_sdk::entity::Owner;

    #[test]
    fn rows_become_users() {
        let base = BaseEntity::with_id(
            "u1".into(),
            Owner {
                user_id: "u1".into(),
                org_id: "o1".into(),
            },
        );
        let mut columns: Vec<String> = BaseEntity::COLUMNS
            .split(',')
            .map(|column| column.trim().to_string())
            .collect();
        columns.extend(["username", "email", "password_hash", "roles"].map(String::from));
        let mut values = base.to_values().expect("values");
        values.extend([
            "ada".into(),
            "ada@example.com".into(),
            "$argon2id$x".into(),
            r#"["user","org_admin"]"#.into(),
        ]);
        let rows = db::Rows {
            columns,
            rows: vec![values],
        };
        let user = from_row(&rows.first().expect("a row")).expect("a user");
        assert_eq!(
            user,
            User {
                base,
                username: "ada".into(),
                email: "ada@example.com".into(),
                password_hash: "$argon2id$x".into(),
                roles: vec!["user".into(), "org_admin".into()],
            }
        );
    }
}
