//! SQL on the component's own SQLite database, with typed parameters and
//! columns.
//!
//! ```no_run
//! use weft_sdk::db::{self, Value};
//!
//! # fn demo() -> Result<(), weft_sdk::Error> {
//! db::execute(
//!     "INSERT INTO notes (id, body, author) VALUES (?1, ?2, ?3)",
//!     &[Value::from(7), "hello".into(), None::<String>.into()],
//! )?;
//! for row in db::query("SELECT id, body FROM notes", &[])?.iter() {
//!     let (id, body) = (row.int("id")?, row.text("body")?);
//!     println!("{id}: {body}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Everything one invocation does here is one transaction, committed when
//! the invocation succeeds.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::bindings::weft::service::storage::{Rows, Value};
use crate::Error;

/// Runs one statement that returns no rows, with positional parameters
/// (`?1`, `?2`, …). Returns the number of rows changed. A broken UNIQUE or
/// other constraint is [`Error::Conflict`].
pub fn execute(sql: &str, params: &[Value]) -> Result<u64, Error> {
    crate::bindings::weft::service::storage::execute(sql, params)
}

/// Runs one statement that returns rows.
pub fn query(sql: &str, params: &[Value]) -> Result<Rows, Error> {
    crate::bindings::weft::service::storage::query(sql, params)
}

/// Runs a read-only statement on what is committed, outside this
/// invocation's transaction and without waiting for the database's writer;
/// it does not see this invocation's own writes. For a read before slow
/// work (a write that depends on it must check again that it holds).
pub fn query_committed(sql: &str, params: &[Value]) -> Result<Rows, Error> {
    crate::bindings::weft::service::storage::query_committed(sql, params)
}

/// `value` serialised as JSON text, for a JSON column.
pub fn json_text(value: &impl Serialize) -> Result<Value, Error> {
    serde_json::to_string(value)
        .map(Value::Text)
        .map_err(|err| Error::Invalid(format!("cannot serialise a JSON column: {err}")))
}

/// `{select} [WHERE c1 AND c2 …] ORDER BY {newest} LIMIT ?n` and its
/// parameters: the newest `limit` rows that meet every condition, where
/// `newest` orders newest first (`seq DESC` for arrival order). A
/// condition is SQL with one `?` and the value for it; those whose value is
/// `None` are left out.
pub fn newest_first(
    select: &str,
    conditions: Vec<(&str, Option<Value>)>,
    newest: &str,
    limit: i64,
) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    for (clause, value) in conditions {
        if let Some(value) = value {
            params.push(value);
            clauses.push(clause.replacen('?', &format!("?{}", params.len()), 1));
        }
    }
    let mut sql = select.to_owned();
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    params.push(Value::from(limit));
    sql.push_str(&format!(" ORDER BY {newest} LIMIT ?{}", params.len()));
    (sql, params)
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Integer(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Value {
        Value::Integer(value.into())
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Value {
        Value::Integer(value.into())
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Value {
        Value::Real(value)
    }
}

/// SQLite has no boolean: `true` is 1 and `false` is 0.
impl From<bool> for Value {
    fn from(value: bool) -> Value {
        Value::Integer(value.into())
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Value {
        Value::Text(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::Text(value)
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Value {
        Value::Text(value.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Value {
        Value::Blob(value)
    }
}

/// `None` is SQL NULL.
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

impl Rows {
    /// The rows, each able to look its columns up by name.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    /// The first row, if any.
    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// One row of a query's result. Its getters fail with [`Error::Invalid`]
/// naming the column when it is missing or of another type.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The value of column `name`.
    pub fn get(&self, name: &str) -> Result<&'a Value, Error> {
        self.columns
            .iter()
            .position(|column| column == name)
            .and_then(|index| self.values.get(index))
            .ok_or_else(|| Error::Invalid(format!("no column `{name}` in the result")))
    }

    /// Column `name` as text (not NULL).
    pub fn text(&self, name: &str) -> Result<String, Error> {
        self.opt_text(name)?
            .ok_or_else(|| Error::Invalid(format!("column `{name}` is NULL, expected text")))
    }

    /// Column `name` as text, or `None` for NULL.
    pub fn opt_text(&self, name: &str) -> Result<Option<String>, Error> {
        match self.get(name)? {
            Value::Text(text) => Ok(Some(text.clone())),
            Value::Null => Ok(None),
            other => Err(wrong_type(name, other, "text")),
        }
    }

    /// Column `name`, JSON text, parsed as `T`.
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T, Error> {
        let text = self.text(name)?;
        serde_json::from_str(&text).map_err(|err| {
            Error::Invalid(format!("column `{name}` is not the JSON expected: {err}"))
        })
    }

    /// Column `name` as an integer (not NULL).
    pub fn int(&self, name: &str) -> Result<i64, Error> {
        self.opt_int(name)?
            .ok_or_else(|| Error::Invalid(format!("column `{name}` is NULL, expected an integer")))
    }

    /// Column `name` as an integer, or `None` for NULL.
    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, Error> {
        match self.get(name)? {
            Value::Integer(number) => Ok(Some(*number)),
            Value::Null => Ok(None),
            other => Err(wrong_type(name, other, "an integer")),
        }
    }
}

fn wrong_type(name: &str, value: &Value, expected: &str) -> Error {
    let found = match value {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    };
    Error::Invalid(format!("column `{name}` is {found}, expected {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rows {
        Rows {
            columns: vec!["id".into(), "body".into(), "author".into()],
            rows: vec![
                vec![Value::Integer(1), "hi".into(), Value::Null],
                vec![Value::Integer(2), "yo".into(), "ada".into()],
            ],
        }
    }

    #[test]
    fn values_from_rust_types() {
        assert_eq!(Value::from(7_i64), Value::Integer(7));
        assert_eq!(Value::from(true), Value::Integer(1));
        assert_eq!(Value::from("a"), Value::Text("a".into()));
        assert_eq!(Value::from(None::<&str>), Value::Null);
        assert_eq!(
            Value::from(Some(String::from("b"))),
            Value::Text("b".into())
        );
        assert_eq!(Value::from(vec![1_u8]), Value::Blob(vec![1]));
    }

    #[test]
    fn columns_by_name() {
        let rows = sample();
        assert_eq!(rows.len(), 2);
        let first = rows.first().expect("a row");
        assert_eq!(first.int("id"), Ok(1));
        assert_eq!(first.text("body").as_deref(), Ok("hi"));
        assert_eq!(first.opt_text("author"), Ok(None));
        let names: Vec<_> = rows
            .iter()
            .map(|row| row.opt_text("author"))
            .collect::<Result<_, _>>()
            .expect("texts");
        assert_eq!(names, vec![None, Some("ada".to_string())]);
    }

    #[test]
    fn json_columns() {
        let rows = Rows {
            columns: vec!["attributes".into(), "broken".into()],
            rows: vec![vec![
                json_text(&serde_json::json!({"a": 1})).expect("serialises"),
                "{nope".into(),
            ]],
        };
        let row = rows.first().expect("a row");
        let attributes: serde_json::Value = row.json("attributes").expect("parses");
        assert_eq!(attributes["a"], 1);
        assert!(
            matches!(row.json::<serde_json::Value>("broken"), Err(Error::Invalid(m)) if m.contains("broken"))
        );
    }

    #[test]
    fn column_errors_name_the_column() {
        let rows = sample();
        let first = rows.first().expect("a row");
        assert_eq!(
            first.text("nope"),
            Err(Error::Invalid("no column `nope` in the result".into()))
        );
        assert_eq!(
            first.int("body"),
            Err(Error::Invalid(
                "column `body` is text, expected an integer".into()
            ))
        );
        assert!(matches!(first.text("author"), Err(Error::Invalid(m)) if m.contains("NULL")));
    }
}
