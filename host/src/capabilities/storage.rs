//! `weft:service/storage`: SQL on the component's own database, inside the
//! invocation's transaction.

use rusqlite::types::Value as SqlValue;

use crate::bindings::weft::service::storage::{Host, Rows, Value};
use crate::bindings::GuestError;
use crate::db::DbError;
use crate::state::HostState;

/// SQL text longer than this is refused.
const MAX_SQL: usize = 64 * 1024;
/// More parameters than this are refused.
const MAX_PARAMS: usize = 999;

impl From<DbError> for GuestError {
    fn from(e: DbError) -> GuestError {
        match e {
            DbError::Invalid(m) => GuestError::Invalid(m),
            DbError::Conflict(m) => GuestError::Conflict(m),
            DbError::Denied(m) => GuestError::Denied(m),
            DbError::LimitExceeded(m) => GuestError::LimitExceeded(m),
            DbError::Unavailable(m) => GuestError::Unavailable(m),
            DbError::Timeout => GuestError::Timeout,
        }
    }
}

fn to_sql(v: Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(f) => SqlValue::Real(f),
        Value::Text(s) => SqlValue::Text(s),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

fn from_sql(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(i),
        SqlValue::Real(f) => Value::Real(f),
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Blob(b) => Value::Blob(b),
    }
}

/// The guest's parameters as SQLite values, once the statement's size and
/// parameter count are checked.
fn checked_params(sql: &str, params: Vec<Value>) -> Result<Vec<SqlValue>, GuestError> {
    if sql.len() > MAX_SQL {
        return Err(GuestError::LimitExceeded(format!(
            "SQL longer than {MAX_SQL} bytes"
        )));
    }
    if params.len() > MAX_PARAMS {
        return Err(GuestError::LimitExceeded(format!(
            "more than {MAX_PARAMS} parameters"
        )));
    }
    Ok(params.into_iter().map(to_sql).collect())
}

impl Host for HostState {
    async fn execute(
        &mut self,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, GuestError>> {
        let params = match checked_params(&sql, params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        let result = match self.tx().await {
            Ok(tx) => tx.execute(sql, params).await,
            Err(e) => Err(e),
        };
        Ok(result.map_err(GuestError::from))
    }

    async fn query(
        &mut self,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, GuestError>> {
        let params = match checked_params(&sql, params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        let result = match self.tx().await {
            Ok(tx) => tx.query(sql, params).await,
            Err(e) => Err(e),
        };
        Ok(result.map(to_rows).map_err(GuestError::from))
    }

    async fn query_committed(
        &mut self,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, GuestError>> {
        let params = match checked_params(&sql, params) {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        let result = self
            .inv
            .component
            .db
            .query_committed(&sql, &params, self.sql_deadline());
        Ok(result.map(to_rows).map_err(GuestError::from))
    }
}

fn to_rows(r: crate::db::Rows) -> Rows {
    Rows {
        columns: r.columns,
        rows: r
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(from_sql).collect())
            .collect(),
    }
}
