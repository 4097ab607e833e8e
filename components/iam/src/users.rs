//! The `users` table: the base entity's columns plus the account's own.

use weft_sdk::db::{self, Value};
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
];

/// A user account. `base.id` is the user id; `base.owner` is the user in
/// their organisation.
pub struct User {
    pub base: BaseEntity,
    pub username: String,
    pub email: String,
    pub password_hash: String,
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
    let base = &user.base;
    db::execute(
        "INSERT INTO users (id, owner_user_id, owner_org_id, attributes, metadata, context,
                            created_at, updated_at, deleted_at, username, email, password_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        &[
            Value::from(&base.id),
            Value::from(&base.owner.user_id),
            Value::from(&base.owner.org_id),
            json_text(&base.attributes)?,
            json_text(&base.metadata)?,
            json_text(&base.context)?,
            Value::from(&base.created_at),
            Value::from(&base.updated_at),
            Value::from(base.deleted_at.clone()),
            Value::from(&user.username),
            Value::from(&user.email),
            Value::from(&user.password_hash),
        ],
    )?;
    Ok(())
}

fn json_text(value: &impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_string(value)
        .map(Value::Text)
        .map_err(|err| Error::Invalid(format!("cannot serialise a user column: {err}")))
}
