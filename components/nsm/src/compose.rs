//! Which events make which notifications, and their text. Pure: no host
//! calls.

use serde::Deserialize;

/// The kinds of notification.
pub const WELCOME: &str = "welcome";
pub const ACCOUNT_CREATED: &str = "account_created";

/// A notification to be stored, before it has an id.
#[derive(Debug, PartialEq, Eq)]
pub struct Draft {
    pub user_id: String,
    /// The user's organisation when the event says it, else empty.
    pub org_id: String,
    pub kind: &'static str,
    pub title: String,
    pub body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserRegistered {
    user_id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    org_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountCreated {
    user_id: String,
    account_id: String,
    #[serde(default)]
    account_type: Option<String>,
    #[serde(default)]
    balance: Option<i64>,
}

/// The notification an event of `event_type` with `data` (JSON text)
/// makes: `None` for events that make none; an error message for data that
/// does not fit its type.
pub fn compose(event_type: &str, data: &str) -> Result<Option<Draft>, String> {
    match event_type {
        "user.registered" => {
            let data: UserRegistered = parse(event_type, data)?;
            Ok(Some(welcome(data)?))
        }
        "account.created" => {
            let data: AccountCreated = parse(event_type, data)?;
            Ok(Some(account_created(data)?))
        }
        _ => Ok(None),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(event_type: &str, data: &str) -> Result<T, String> {
    weft_sdk::from_json_object(data)
        .map_err(|err| format!("`{event_type}` data does not fit: {err}"))
}

fn welcome(data: UserRegistered) -> Result<Draft, String> {
    let user_id = non_empty(data.user_id)?;
    let (title, body) = match data.username.filter(|name| !name.is_empty()) {
        Some(name) => (
            format!("Welcome to Weft, {name}!"),
            format!("Hi {name}, your account is ready. We are opening a savings account for you."),
        ),
        None => (
            "Welcome to Weft!".to_string(),
            "Your account is ready. We are opening a savings account for you.".to_string(),
        ),
    };
    Ok(Draft {
        user_id,
        org_id: data.org_id.unwrap_or_default(),
        kind: WELCOME,
        title,
        body,
    })
}

fn account_created(data: AccountCreated) -> Result<Draft, String> {
    let user_id = non_empty(data.user_id)?;
    let account_type = data
        .account_type
        .filter(|kind| !kind.is_empty())
        .unwrap_or_else(|| "new".into());
    let balance = data.balance.unwrap_or(0);
    Ok(Draft {
        user_id,
        org_id: String::new(),
        kind: ACCOUNT_CREATED,
        title: format!("Your {account_type} account is open"),
        body: format!(
            "Account {} is ready, with a balance of {balance}.",
            data.account_id
        ),
    })
}

fn non_empty(user_id: String) -> Result<String, String> {
    if user_id.is_empty() {
        Err("userId must not be empty".into())
    } else {
        Ok(user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcomes_mention_the_username() {
        let draft = compose(
            "user.registered",
            r#"{"userId":"u1","username":"ada","email":"a@b.co","orgId":"o1"}"#,
        )
        .expect("fits")
        .expect("a notification");
        assert_eq!(draft.user_id, "u1");
        assert_eq!(draft.org_id, "o1");
        assert_eq!(draft.kind, "welcome");
        assert!(draft.title.contains("ada"), "{}", draft.title);
        assert!(draft.body.contains("ada"), "{}", draft.body);
    }

    #[test]
    fn a_welcome_without_a_username_still_reads_well() {
        let draft = compose("user.registered", r#"{"userId":"u1"}"#)
            .expect("fits")
            .expect("a notification");
        assert_eq!(draft.title, "Welcome to Weft!");
        assert_eq!(draft.org_id, "");
    }

    #[test]
    fn account_created_names_the_account() {
        let draft = compose(
            "account.created",
            r#"{"accountId":"a1","userId":"u1","accountType":"savings","balance":0}"#,
        )
        .expect("fits")
        .expect("a notification");
        assert_eq!(draft.kind, "account_created");
        assert_eq!(draft.user_id, "u1");
        assert_eq!(draft.title, "Your savings account is open");
        assert!(draft.body.contains("a1") && draft.body.contains('0'));
    }

    #[test]
    fn other_events_make_none() {
        assert_eq!(compose("transaction.completed", "{}"), Ok(None));
        assert_eq!(compose("notification.sent", "not even json"), Ok(None));
    }

    #[test]
    fn bad_data_is_an_error() {
        for (event_type, data) in [
            ("user.registered", r#"{"username":"ada"}"#),
            ("user.registered", r#"{"userId":""}"#),
            ("user.registered", "[]"),
            ("account.created", r#"{"userId":"u1"}"#),
            (
                "account.created",
                r#"{"userId":"u1","accountId":"a1","balance":1.5}"#,
            ),
        ] {
            assert!(compose(event_type, data).is_err(), "{event_type} {data}");
        }
    }
}
