//! `POST /transactions` and `GET /accounts/{id}/transactions`.
//!
//! A transaction as the contract shows it:
//! `{id, type, accountId, toAccountId, amount, balanceAfter, createdAt}`.
//! In the POST answer and the `transaction.completed` event,
//! `balanceAfter` is `accountId`'s balance after it. In an account's
//! history it is *that* account's balance after it — for a transfer into
//! the account, the receiver's balance, so a receiver never sees the
//! sender's balance.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use weft_sdk::db::{self, Row, Value};
use weft_sdk::{events, http, idempotency, new_id, now_rfc3339, Caller, Error, Request, Response};

use crate::accounts::{self, Account};
use crate::money::{self, Kind, Refusal};

/// A stored transaction: one ledger row.
#[derive(Clone, Debug, PartialEq)]
pub struct Transaction {
    pub id: String,
    pub kind: Kind,
    pub account_id: String,
    pub to_account_id: Option<String>,
    pub amount: i64,
    /// `account_id`'s balance after it.
    pub balance_after: i64,
    /// `to_account_id`'s balance after it (transfers).
    pub to_balance_after: Option<i64>,
    /// Who made it.
    pub user_id: String,
    pub created_at: String,
}

/// A transaction as the contract shows it.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionView<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub account_id: &'a str,
    pub to_account_id: Option<&'a str>,
    pub amount: i64,
    pub balance_after: i64,
    pub created_at: &'a str,
}

impl Transaction {
    /// The transaction as seen from account `seen_from`: `balanceAfter` is
    /// that account's balance after it.
    pub fn view(&self, seen_from: &str) -> TransactionView<'_> {
        let balance_after = match (&self.to_account_id, self.to_balance_after) {
            (Some(to), Some(to_balance)) if to == seen_from && self.account_id != seen_from => {
                to_balance
            }
            _ => self.balance_after,
        };
        TransactionView {
            id: &self.id,
            kind: self.kind,
            account_id: &self.account_id,
            to_account_id: self.to_account_id.as_deref(),
            amount: self.amount,
            balance_after,
            created_at: &self.created_at,
        }
    }
}

/// `transaction.completed` data: the transaction plus its maker.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Completed<'a> {
    #[serde(flatten)]
    transaction: TransactionView<'a>,
    user_id: &'a str,
}

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewTransaction {
    #[serde(rename = "type")]
    kind: Kind,
    account_id: String,
    amount: Json,
    #[serde(default)]
    to_account_id: Option<String>,
}

/// A checked request: what to do.
#[derive(Debug, PartialEq)]
struct Order {
    kind: Kind,
    account_id: String,
    to_account_id: Option<String>,
    amount: i64,
}

/// The rules a request must meet before any account is looked at.
fn validate(input: NewTransaction) -> Result<Order, String> {
    let amount = money::parse_amount(&input.amount)?;
    if input.account_id.is_empty() {
        return Err("accountId must not be empty".into());
    }
    let to_account_id = match (input.kind, input.to_account_id) {
        (Kind::Transfer, None) => return Err("toAccountId is required for a transfer".into()),
        (Kind::Transfer, Some(to)) if to.is_empty() => {
            return Err("toAccountId must not be empty".into())
        }
        (Kind::Transfer, Some(to)) if to == input.account_id => {
            return Err("toAccountId must be another account than accountId".into())
        }
        (Kind::Transfer, Some(to)) => Some(to),
        (_, Some(_)) => return Err("toAccountId is only for transfers".into()),
        (_, None) => None,
    };
    Ok(Order {
        kind: input.kind,
        account_id: input.account_id,
        to_account_id,
        amount,
    })
}

/// `POST /transactions` → 201 the transaction; emits
/// `transaction.completed`. Honours `Idempotency-Key`.
pub fn create(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    Ok(idempotency::with_key(request, caller, || {
        execute(request, caller).unwrap_or_else(|response| response)
    }))
}

fn execute(request: &Request, caller: &Caller) -> Result<Response, Response> {
    let input: NewTransaction = http::parse_json(request)?;
    let order = validate(input).map_err(|message| http::validation_failed(&message))?;

    // Everything is checked before anything is written: a 4xx commits.
    let from = accounts::find_own(&order.account_id, caller)?;
    let to = match &order.to_account_id {
        None => None,
        Some(id) => Some(
            accounts::find(id)?
                .ok_or_else(|| http::not_found_because("no such account: toAccountId"))?,
        ),
    };
    if let Some(to) = &to {
        if to.currency != from.currency {
            return Err(http::validation_failed(&format!(
                "cannot transfer between currencies ({} to {})",
                from.currency, to.currency
            )));
        }
    }
    let (from_after, to_after) = money::settle(
        order.kind,
        order.amount,
        from.balance,
        to.as_ref().map(|account| account.balance),
    )
    .map_err(refusal)?;

    let transaction = Transaction {
        id: new_id(),
        kind: order.kind,
        account_id: from.base.id.clone(),
        to_account_id: to.as_ref().map(|account| account.base.id.clone()),
        amount: order.amount,
        balance_after: from_after,
        to_balance_after: to_after,
        user_id: caller.user_id.clone(),
        created_at: now_rfc3339(),
    };
    record(&transaction, &from, to.as_ref()).map_err(http::rollback)?;

    let view = transaction.view(&transaction.account_id);
    events::publish(
        "transaction.completed",
        &Completed {
            transaction: transaction.view(&transaction.account_id),
            user_id: &caller.user_id,
        },
    )
    .map_err(http::rollback)?;
    Ok(http::json(201, &view))
}

fn refusal(refusal: Refusal) -> Response {
    match refusal {
        Refusal::InsufficientFunds => http::error(
            422,
            "insufficient_funds",
            "the account's balance is less than the amount",
        ),
        Refusal::Overflow => {
            http::validation_failed("amount would take a balance past the largest supported")
        }
    }
}

/// `GET /accounts/{id}/transactions?limit=`: the account's newest `limit`
/// transactions (made from it or transferred into it), newest first; 404
/// unless the account is the caller's.
pub fn history(request: &Request, account_id: &str) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let limit = http::limit(&http::query_params(&request.query))?;
    let account = accounts::find_own(account_id, caller)?;
    let rows = db::query(
        "SELECT id, type, account_id, to_account_id, amount, balance_after, to_balance_after,
                user_id, created_at
         FROM transactions WHERE account_id = ?1 OR to_account_id = ?1
         ORDER BY seq DESC LIMIT ?2",
        &[Value::from(&account.base.id), Value::from(limit)],
    )?;
    let transactions = rows
        .iter()
        .map(|row| from_row(&row))
        .collect::<Result<Vec<_>, _>>()?;
    let views: Vec<_> = transactions
        .iter()
        .map(|transaction| transaction.view(&account.base.id))
        .collect();
    Ok(http::json(200, &views))
}

/// Moves the balances and appends the ledger row.
fn record(transaction: &Transaction, from: &Account, to: Option<&Account>) -> Result<(), Error> {
    let now = &transaction.created_at;
    accounts::set_balance(&from.base.id, transaction.balance_after, now)?;
    if let (Some(to), Some(to_balance)) = (to, transaction.to_balance_after) {
        accounts::set_balance(&to.base.id, to_balance, now)?;
    }
    db::execute(
        "INSERT INTO transactions (id, type, account_id, to_account_id, amount, balance_after,
                                   to_balance_after, user_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[
            Value::from(&transaction.id),
            Value::from(transaction.kind.as_str()),
            Value::from(&transaction.account_id),
            Value::from(transaction.to_account_id.clone()),
            Value::from(transaction.amount),
            Value::from(transaction.balance_after),
            Value::from(transaction.to_balance_after),
            Value::from(&transaction.user_id),
            Value::from(now),
        ],
    )?;
    Ok(())
}

fn from_row(row: &Row<'_>) -> Result<Transaction, Error> {
    let kind = row.text("type")?;
    Ok(Transaction {
        id: row.text("id")?,
        kind: Kind::parse(&kind)
            .ok_or_else(|| Error::Invalid(format!("unknown stored transaction type `{kind}`")))?,
        account_id: row.text("account_id")?,
        to_account_id: row.opt_text("to_account_id")?,
        amount: row.int("amount")?,
        balance_after: row.int("balance_after")?,
        to_balance_after: row.opt_int("to_balance_after")?,
        user_id: row.text("user_id")?,
        created_at: row.text("created_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &str) -> Result<Order, String> {
        let input: NewTransaction = serde_json::from_str(body).map_err(|err| err.to_string())?;
        validate(input)
    }

    #[test]
    fn valid_orders() {
        assert_eq!(
            parse(r#"{"type":"deposit","accountId":"a1","amount":500}"#),
            Ok(Order {
                kind: Kind::Deposit,
                account_id: "a1".into(),
                to_account_id: None,
                amount: 500
            })
        );
        assert_eq!(
            parse(r#"{"type":"withdrawal","accountId":"a1","amount":1,"toAccountId":null}"#)
                .map(|order| order.kind),
            Ok(Kind::Withdrawal)
        );
        assert_eq!(
            parse(r#"{"type":"transfer","accountId":"a1","amount":7,"toAccountId":"a2"}"#)
                .map(|order| order.to_account_id),
            Ok(Some("a2".into()))
        );
    }

    #[test]
    fn invalid_orders() {
        for (body, expected) in [
            (
                r#"{"type":"deposit","accountId":"a1","amount":0}"#,
                "amount",
            ),
            (
                r#"{"type":"deposit","accountId":"a1","amount":-3}"#,
                "amount",
            ),
            (
                r#"{"type":"deposit","accountId":"a1","amount":2.5}"#,
                "amount",
            ),
            (
                r#"{"type":"deposit","accountId":"a1","amount":"5"}"#,
                "amount",
            ),
            (
                r#"{"type":"deposit","accountId":"","amount":5}"#,
                "accountId",
            ),
            (
                r#"{"type":"transfer","accountId":"a1","amount":5}"#,
                "toAccountId is required",
            ),
            (
                r#"{"type":"transfer","accountId":"a1","amount":5,"toAccountId":"a1"}"#,
                "another account",
            ),
            (
                r#"{"type":"transfer","accountId":"a1","amount":5,"toAccountId":""}"#,
                "toAccountId",
            ),
            (
                r#"{"type":"deposit","accountId":"a1","amount":5,"toAccountId":"a2"}"#,
                "only for transfers",
            ),
            (
                r#"{"type":"refund","accountId":"a1","amount":5}"#,
                "unknown variant",
            ),
            (
                r#"{"type":"deposit","accountId":"a1"}"#,
                "missing field `amount`",
            ),
            (
                r#"{"type":"deposit","accountId":"a1","amount":5,"memo":"x"}"#,
                "unknown field",
            ),
        ] {
            let message = parse(body).expect_err(body);
            assert!(message.contains(expected), "{body}: {message}");
        }
    }

    fn transfer() -> Transaction {
        Transaction {
            id: "t1".into(),
            kind: Kind::Transfer,
            account_id: "a1".into(),
            to_account_id: Some("a2".into()),
            amount: 30,
            balance_after: 70,
            to_balance_after: Some(35),
            user_id: "u1".into(),
            created_at: "2026-11-25T10:00:00Z".into(),
        }
    }

    #[test]
    fn the_contract_shape() {
        let transfer = transfer();
        assert_eq!(
            serde_json::to_value(transfer.view("a1")).expect("serialises"),
            json!({"id": "t1", "type": "transfer", "accountId": "a1", "toAccountId": "a2",
                   "amount": 30, "balanceAfter": 70, "createdAt": "2026-11-25T10:00:00Z"})
        );
        let completed = Completed {
            transaction: transfer.view("a1"),
            user_id: "u1",
        };
        assert_eq!(
            serde_json::to_value(completed).expect("serialises"),
            json!({"id": "t1", "type": "transfer", "accountId": "a1", "toAccountId": "a2",
                   "amount": 30, "balanceAfter": 70, "createdAt": "2026-11-25T10:00:00Z",
                   "userId": "u1"})
        );
        let mut deposit = transfer.clone();
        deposit.kind = Kind::Deposit;
        deposit.to_account_id = None;
        deposit.to_balance_after = None;
        assert_eq!(
            serde_json::to_value(deposit.view("a1")).expect("serialises")["toAccountId"],
            Json::Null
        );
    }

    #[test]
    fn a_receiver_sees_its_own_balance() {
        let transfer = transfer();
        assert_eq!(transfer.view("a1").balance_after, 70);
        assert_eq!(transfer.view("a2").balance_after, 35);
    }

    #[test]
    fn refusals() {
        let response = refusal(Refusal::InsufficientFunds);
        assert_eq!(response.status, 422);
        let body: Json = serde_json::from_slice(&response.body).expect("JSON");
        assert_eq!(body["error"]["code"], "insufficient_funds");
        assert_eq!(refusal(Refusal::Overflow).status, 400);
    }

    #[test]
    fn rows_become_transactions() {
        let rows = db::Rows {
            columns: [
                "id",
                "type",
                "account_id",
                "to_account_id",
                "amount",
                "balance_after",
                "to_balance_after",
                "user_id",
                "created_at",
            ]
            .map(String::from)
            .to_vec(),
            rows: vec![vec![
                "t1".into(),
                "transfer".into(),
                "a1".into(),
                "a2".into(),
                Value::from(30_i64),
                Value::from(70_i64),
                Value::from(35_i64),
                "u1".into(),
                "2026-11-25T10:00:00Z".into(),
            ]],
        };
        assert_eq!(from_row(&rows.first().expect("a row")), Ok(transfer()));
    }
}
