//! Accounts: `GET /accounts`, `POST /accounts`, `GET /accounts/{id}`, and
//! the default savings account opened on `user.registered`.
//!
//! An account as the contract shows it:
//! `{id, userId, accountType, balance, currency, createdAt}`.

use serde::{Deserialize, Serialize};
use weft_sdk::db::{self, Row, Value};
use weft_sdk::entity::{BaseEntity, Owner};
use weft_sdk::{config, events, http, idempotency, log, Caller, Error, Event, Request, Response};

/// The kinds of account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Savings,
    Checking,
}

impl AccountType {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Savings => "savings",
            AccountType::Checking => "checking",
        }
    }

    fn parse(name: &str) -> Option<AccountType> {
        match name {
            "savings" => Some(AccountType::Savings),
            "checking" => Some(AccountType::Checking),
            _ => None,
        }
    }
}

/// A stored account. `base.owner.user_id` is the holder.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub base: BaseEntity,
    pub account_type: AccountType,
    /// Integer minor units, never negative.
    pub balance: i64,
    /// An ISO 4217 code.
    pub currency: String,
    /// The one account opened for the user on `user.registered`.
    pub is_default: bool,
}

/// An account as the contract shows it.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub account_type: AccountType,
    pub balance: i64,
    pub currency: &'a str,
    pub created_at: &'a str,
}

impl Account {
    /// A new account for `owner`, balance 0, in the configured currency.
    pub fn open(owner: Owner, account_type: AccountType, is_default: bool) -> Account {
        Account {
            base: BaseEntity::new(owner),
            account_type,
            balance: 0,
            currency: currency(config::get("currency").as_deref()),
            is_default,
        }
    }

    pub fn view(&self) -> AccountView<'_> {
        AccountView {
            id: &self.base.id,
            user_id: &self.base.owner.user_id,
            account_type: self.account_type,
            balance: self.balance,
            currency: &self.currency,
            created_at: &self.base.created_at,
        }
    }
}

/// `account.created` data.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountCreated<'a> {
    account_id: &'a str,
    user_id: &'a str,
    account_type: AccountType,
    balance: i64,
}

fn publish_created(account: &Account) -> Result<String, Error> {
    events::publish(
        "account.created",
        &AccountCreated {
            account_id: &account.base.id,
            user_id: &account.base.owner.user_id,
            account_type: account.account_type,
            balance: account.balance,
        },
    )
}

/// The currency of new accounts: config `currency` when it is a
/// three-letter code (upper-cased), else `USD` (a bad value is logged).
pub fn currency(config: Option<&str>) -> String {
    match config.map(str::trim) {
        None | Some("") => "USD".into(),
        Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) => {
            code.to_ascii_uppercase()
        }
        Some(other) => {
            log::warn(&format!(
                "config `currency` {other:?} is not an ISO 4217 code; using USD"
            ));
            "USD".into()
        }
    }
}

// --- events ------------------------------------------------------------------

/// `user.registered` data (other fields are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserRegistered {
    user_id: String,
    #[serde(default)]
    org_id: Option<String>,
}

/// Opens the user's default savings account unless they have one, whatever
/// the event's id: exactly one per user. Emits `account.created` only when
/// it opened one.
pub fn on_user_registered(event: &Event) -> Result<(), Error> {
    let data: UserRegistered = events::data(event)?;
    if data.user_id.is_empty() {
        return Err(Error::Invalid(format!(
            "`user.registered` event {} has an empty userId",
            event.id
        )));
    }
    let owner = Owner {
        user_id: data.user_id,
        org_id: data.org_id.unwrap_or_default(),
    };
    let mut account = Account::open(owner, AccountType::Savings, true);
    account.base.add_context(serde_json::json!({
        "eventId": event.id,
        "eventType": event.event_type,
    }));
    if insert(&account)? {
        publish_created(&account)?;
        log::info(&format!(
            "opened default account {} for user {}",
            account.base.id, account.base.owner.user_id
        ));
    } else {
        log::debug(&format!(
            "user {} already has a default account (event {})",
            account.base.owner.user_id, event.id
        ));
    }
    Ok(())
}

// --- routes ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewAccount {
    account_type: AccountType,
}

/// `GET /accounts?limit=`: the caller's newest `limit` accounts, oldest
/// first.
pub fn list(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let limit = http::limit(&http::query_params(&request.query))?;
    let rows = db::query(
        &format!(
            "SELECT * FROM (SELECT seq, {}, account_type, balance, currency, is_default
                            FROM accounts WHERE owner_user_id = ?1 AND deleted_at IS NULL
                            ORDER BY seq DESC LIMIT ?2)
             ORDER BY seq ASC",
            BaseEntity::COLUMNS
        ),
        &[Value::from(&caller.user_id), Value::from(limit)],
    )?;
    let accounts = rows
        .iter()
        .map(|row| from_row(&row))
        .collect::<Result<Vec<_>, _>>()?;
    let views: Vec<_> = accounts.iter().map(Account::view).collect();
    Ok(http::json(200, &views))
}

/// `POST /accounts` `{accountType}` → 201 the account; emits
/// `account.created`. Honours `Idempotency-Key`.
pub fn create(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    Ok(idempotency::with_key(request, caller, || {
        open(request, caller).unwrap_or_else(|response| response)
    }))
}

fn open(request: &Request, caller: &Caller) -> Result<Response, Response> {
    let input: NewAccount = http::parse_json(request)?;
    let owner = Owner {
        user_id: caller.user_id.clone(),
        org_id: caller.org_id.clone(),
    };
    let account = Account::open(owner, input.account_type, false);
    if !insert(&account)? {
        return Err(http::internal("a fresh account id already exists"));
    }
    publish_created(&account).map_err(http::rollback)?;
    Ok(http::json(201, &account.view()))
}

/// `GET /accounts/{id}` → 200, or 404 when it is not the caller's.
pub fn get(request: &Request, id: &str) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let account = find_own(id, caller)?;
    Ok(http::json(200, &account.view()))
}

/// The caller's live account `id`, or 404 — the same whether it does not
/// exist or is someone else's.
pub fn find_own(id: &str, caller: &Caller) -> Result<Account, Response> {
    find(id)?
        .filter(|account| account.base.owner.user_id == caller.user_id)
        .ok_or_else(|| http::not_found_because("no such account"))
}

// --- storage -----------------------------------------------------------------

/// Stores a new account; false when it broke a uniqueness rule (a second
/// default account for the user) and nothing was stored.
fn insert(account: &Account) -> Result<bool, Error> {
    let mut params = account.base.to_values()?;
    params.extend([
        Value::from(account.account_type.as_str()),
        Value::from(account.balance),
        Value::from(&account.currency),
        Value::from(account.is_default),
    ]);
    let inserted = db::execute(
        &format!(
            "INSERT INTO accounts ({}, account_type, balance, currency, is_default)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT DO NOTHING",
            BaseEntity::COLUMNS
        ),
        &params,
    )?;
    Ok(inserted == 1)
}

/// The live account `id`, whoever holds it.
pub fn find(id: &str) -> Result<Option<Account>, Error> {
    let rows = db::query(
        &format!(
            "SELECT {}, account_type, balance, currency, is_default FROM accounts
             WHERE id = ?1 AND deleted_at IS NULL",
            BaseEntity::COLUMNS
        ),
        &[id.into()],
    )?;
    rows.first().map(|row| from_row(&row)).transpose()
}

/// Stores `account`'s new balance.
pub fn set_balance(id: &str, balance: i64, now: &str) -> Result<(), Error> {
    let changed = db::execute(
        "UPDATE accounts SET balance = ?2, updated_at = ?3 WHERE id = ?1",
        &[id.into(), balance.into(), now.into()],
    )?;
    if changed == 1 {
        Ok(())
    } else {
        Err(Error::NotFound(format!("account {id} vanished")))
    }
}

fn from_row(row: &Row<'_>) -> Result<Account, Error> {
    let kind = row.text("account_type")?;
    Ok(Account {
        base: BaseEntity::from_row(row)?,
        account_type: AccountType::parse(&kind)
            .ok_or_else(|| Error::Invalid(format!("unknown stored account type `{kind}`")))?,
        balance: row.int("balance")?,
        currency: row.text("currency")?,
        is_default: row.int("is_default")? != 0,
    })
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

    fn sample() -> Account {
        let mut base = BaseEntity::with_id("a1".into(), owner());
        base.created_at = "2026-11-25T10:00:00Z".into();
        Account {
            base,
            account_type: AccountType::Savings,
            balance: 1250,
            currency: "EUR".into(),
            is_default: true,
        }
    }

    #[test]
    fn the_contract_shape() {
        assert_eq!(
            serde_json::to_value(sample().view()).expect("serialises"),
            json!({"id": "a1", "userId": "u1", "accountType": "savings", "balance": 1250,
                   "currency": "EUR", "createdAt": "2026-11-25T10:00:00Z"})
        );
        let account = sample();
        assert_eq!(
            serde_json::to_value(AccountCreated {
                account_id: &account.base.id,
                user_id: &account.base.owner.user_id,
                account_type: account.account_type,
                balance: account.balance,
            })
            .expect("serialises"),
            json!({"accountId": "a1", "userId": "u1", "accountType": "savings", "balance": 1250})
        );
    }

    #[test]
    fn rows_become_accounts() {
        let account = sample();
        let mut columns: Vec<String> = BaseEntity::COLUMNS
            .split(',')
            .map(|column| column.trim().to_string())
            .collect();
        columns.extend(["account_type", "balance", "currency", "is_default"].map(String::from));
        let mut values = account.base.to_values().expect("values");
        values.extend([
            "savings".into(),
            Value::from(1250_i64),
            "EUR".into(),
            Value::from(1_i64),
        ]);
        let rows = db::Rows {
            columns,
            rows: vec![values],
        };
        assert_eq!(from_row(&rows.first().expect("a row")), Ok(account));
    }

    #[test]
    fn currencies() {
        assert_eq!(currency(None), "USD");
        assert_eq!(currency(Some("")), "USD");
        assert_eq!(currency(Some("EUR")), "EUR");
        assert_eq!(currency(Some(" chf ")), "CHF");
        assert_eq!(currency(Some("EURO")), "USD");
        assert_eq!(currency(Some("\"EUR\"")), "USD");
        assert_eq!(currency(Some("12$")), "USD");
    }

    #[test]
    fn account_types() {
        let parse = |body: &str| serde_json::from_str::<NewAccount>(body);
        assert_eq!(
            parse(r#"{"accountType":"checking"}"#)
                .expect("valid")
                .account_type,
            AccountType::Checking
        );
        assert!(parse(r#"{"accountType":"Savings"}"#).is_err());
        assert!(parse(r#"{"accountType":"brokerage"}"#).is_err());
        assert!(parse(r#"{}"#).is_err());
        assert!(parse(r#"{"accountType":"savings","balance":5}"#).is_err());
        for kind in [AccountType::Savings, AccountType::Checking] {
            assert_eq!(AccountType::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn registrations_need_a_user() {
        let parse = |data: &str| {
            serde_json::from_str::<UserRegistered>(data).map(|d| (d.user_id, d.org_id))
        };
        assert_eq!(
            parse(r#"{"userId":"u1","username":"ada","email":"a@b.co","orgId":"o1"}"#)
                .expect("valid"),
            ("u1".to_string(), Some("o1".to_string()))
        );
        assert!(parse(r#"{"username":"ada"}"#).is_err());
    }
}
