//! `POST /register`: creates an account.
//!
//! Body `{username, email, password, orgId?}` → 201
//! `{id, username, email, orgId, createdAt}`; emits `user.registered`
//! `{userId, username, email, orgId}`. Bad input → 400 `validation_failed`
//! naming the field; a taken username or email (case-insensitively) → 409
//! `conflict`. Without `orgId` the user gets an organisation of their own
//! and is its `org_admin`; with `orgId`, `invitation` must be a code of that
//! org, unused, unexpired and for this email if it names one, else 403
//! `forbidden` (the code is spent in the same transaction). A username
//! listed in config `admins` → 403: the operator creates it (`admins`).

use serde::{Deserialize, Serialize};
use weft_sdk::entity::{BaseEntity, Owner};
use weft_sdk::{config, events, http, new_id, Error, Request, Response};

use crate::users::{self, Taken, User};
use crate::{invitations, password, roles};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterRequest {
    username: String,
    email: String,
    password: String,
    #[serde(default)]
    org_id: Option<String>,
    #[serde(default)]
    invitation: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Registered<'a> {
    id: &'a str,
    username: &'a str,
    email: &'a str,
    org_id: &'a str,
    created_at: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserRegistered<'a> {
    user_id: &'a str,
    username: &'a str,
    email: &'a str,
    org_id: &'a str,
}

pub fn handle(request: &Request) -> Result<Response, Response> {
    let input: RegisterRequest = http::parse_json(request)?;
    validate(&input).map_err(|message| http::validation_failed(&message))?;
    if roles::is_listed(&input.username, config::get("admins").as_deref()) {
        return Err(forbidden(
            "this username is reserved for an administrator, whom the operator creates",
        ));
    }
    let (org_id, stored_roles) = match &input.org_id {
        None => (new_id(), vec![roles::USER.into(), roles::ORG_ADMIN.into()]),
        Some(org_id) => (org_id.clone(), vec![roles::USER.into()]),
    };
    let joining = input.org_id.is_some();
    create(NewAccount {
        username: input.username,
        email: input.email,
        password: &input.password,
        org_id,
        roles: stored_roles,
        invitation: joining.then(|| input.invitation.unwrap_or_default()),
    })
}

/// 403 `forbidden`.
fn forbidden(message: &str) -> Response {
    http::error(403, "forbidden", message)
}

/// An account to create: what [`create`] needs, from `/register` or from
/// the operator's `POST /admins`.
pub struct NewAccount<'a> {
    pub username: String,
    pub email: String,
    pub password: &'a str,
    pub org_id: String,
    pub roles: Vec<String>,
    /// The code that lets the user into `org_id`, an existing org.
    pub invitation: Option<String>,
}

/// Creates the account and publishes `user.registered`.
pub fn create(account: NewAccount<'_>) -> Result<Response, Response> {
    // Hash before the first storage call: the ~50 ms of Argon2 then runs
    // outside the database's writer lease, so registrations hash in
    // parallel instead of queueing behind each other.
    let password_hash = password::hash(account.password).map_err(http::internal)?;

    match users::taken(&account.username, &account.email)? {
        Some(Taken::Username) => return Err(http::conflict("username is already taken")),
        Some(Taken::Email) => return Err(http::conflict("email is already registered")),
        None => {}
    }
    let id = new_id();
    let spent = match &account.invitation {
        Some(code) => {
            if !invitations::spend(code, &account.org_id, &account.email, &id)? {
                return Err(forbidden(
                    "joining an existing organisation needs a valid, unused invitation to it",
                ));
            }
            true
        }
        None => false,
    };
    let owner = Owner {
        user_id: id.clone(),
        org_id: account.org_id,
    };
    let user = User {
        base: BaseEntity::with_id(id, owner),
        username: account.username,
        email: account.email,
        password_hash,
        roles: account.roles,
    };
    if let Err(err) = users::insert(&user) {
        // A 4xx commits, so an invitation spent for an account that was
        // not made is given back.
        if spent {
            invitations::unspend(&user.base.id)?;
        }
        return Err(match err {
            // Registered by someone else between the check and the insert.
            Error::Conflict(_) => http::conflict("username or email is already taken"),
            other => other.into(),
        });
    }

    events::publish(
        "user.registered",
        &UserRegistered {
            user_id: &user.base.id,
            username: &user.username,
            email: &user.email,
            org_id: &user.base.owner.org_id,
        },
    )
    .map_err(http::rollback)?;

    Ok(http::json(
        201,
        &Registered {
            id: &user.base.id,
            username: &user.username,
            email: &user.email,
            org_id: &user.base.owner.org_id,
            created_at: &user.base.created_at,
        },
    ))
}

fn validate(input: &RegisterRequest) -> Result<(), String> {
    validate_fields(
        &input.username,
        &input.email,
        &input.password,
        input.org_id.as_deref(),
    )?;
    match (&input.org_id, &input.invitation) {
        (None, Some(_)) => Err("invitation is only for joining an org: give its orgId".into()),
        (_, Some(code)) if code.len() > 128 => {
            Err("invitation must be the code an invitation gave".into())
        }
        _ => Ok(()),
    }
}

/// The checks of an account's own fields, shared with `POST /admins`.
pub fn validate_fields(
    username: &str,
    email: &str,
    password: &str,
    org_id: Option<&str>,
) -> Result<(), String> {
    if !valid_username(username) {
        return Err(
            "username must be 3 to 32 characters of letters, digits, '_', '.' or '-'".into(),
        );
    }
    if !valid_email(email) {
        return Err("email must be a valid email address, such as ada@example.com".into());
    }
    password::validate("password", password)?;
    if let Some(org_id) = org_id {
        if !valid_org_id(org_id) {
            return Err(
                "orgId, when given, must be 1 to 64 characters of letters, digits, '_', '.', ':' or '-'"
                    .into(),
            );
        }
    }
    Ok(())
}

fn valid_username(username: &str) -> bool {
    (3..=32).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A pragmatic check of an unquoted ASCII address `local@domain`: the local
/// part 1–64 characters of letters, digits and ``!#$%&'*+/=?^_`{|}~.-``
/// (dots not leading, trailing or doubled); the domain two or more labels of
/// letters, digits and inner hyphens, each 1–63 long, the last not numeric;
/// 254 characters at most in all.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
    email.len() <= 254 && local_ok && domain_ok
}

fn valid_org_id(org_id: &str) -> bool {
    (1..=64).contains(&org_id.len())
        && org_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(username: &str, email: &str, password: &str) -> RegisterRequest {
        RegisterRequest {
            username: username.into(),
            email: email.into(),
            password: password.into(),
            org_id: None,
            invitation: None,
        }
    }

    fn error_of(input: &RegisterRequest) -> String {
        validate(input).expect_err("invalid")
    }

    #[test]
    fn accepts_a_good_registration() {
        assert_eq!(
            validate(&input(
                "ada.l_1-x",
                "Ada.Lovelace+w@Example.co.uk",
                "12345678"
            )),
            Ok(())
        );
        let mut with_org = input("ada", "ada@example.com", &"é".repeat(1024));
        with_org.org_id = Some(new_id());
        assert_eq!(validate(&with_org), Ok(()));
    }

    #[test]
    fn usernames() {
        for bad in ["ab", &"a".repeat(33), "ada lovelace", "ada!", "adé", ""] {
            assert!(!valid_username(bad), "{bad:?}");
        }
        for good in ["abc", &"a".repeat(32), "A_b.c-9"] {
            assert!(valid_username(good), "{good:?}");
        }
        assert!(error_of(&input("x", "ada@example.com", "12345678")).starts_with("username"));
    }

    #[test]
    fn emails() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "ada@exa mple.com",
            "ada lovelace@example.com",
            ".ada@example.com",
            "ada..l@example.com",
            "ada@-example.com",
            "ada@example..com",
            "ada@example.123",
            "adé@example.com",
            &format!("{}@example.com", "a".repeat(65)),
            &format!("ada@{}.com", "a".repeat(64)),
        ] {
            assert!(!valid_email(bad), "{bad:?}");
        }
        for good in ["a@b.co", "ada+tag@mail.example.com", "x_y@1.example.org"] {
            assert!(valid_email(good), "{good:?}");
        }
        assert!(error_of(&input("ada", "nope", "12345678")).starts_with("email"));
    }

    #[test]
    fn passwords_count_characters() {
        assert!(error_of(&input("ada", "ada@example.com", "1234567")).starts_with("password"));
        assert!(validate(&input("ada", "ada@example.com", &"é".repeat(8))).is_ok());
        assert!(
            error_of(&input("ada", "ada@example.com", &"a".repeat(1025))).starts_with("password")
        );
    }

    #[test]
    fn org_ids() {
        let mut bad = input("ada", "ada@example.com", "12345678");
        bad.org_id = Some(String::new());
        assert!(error_of(&bad).starts_with("orgId"));
        bad.org_id = Some("org one".into());
        assert!(error_of(&bad).starts_with("orgId"));
    }

    #[test]
    fn bodies_are_strict() {
        let request = |body: &str| Request {
            method: "POST".into(),
            path: "/register".into(),
            query: String::new(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            caller: None,
        };
        let message = |body: &str| {
            let response = http::parse_json::<RegisterRequest>(&request(body))
                .err()
                .expect("rejected");
            assert_eq!(response.status, 400);
            String::from_utf8(response.body).expect("utf-8")
        };
        assert!(
            message(r#"{"username":"ada","email":"a@b.co"}"#).contains("missing field `password`")
        );
        assert!(
            message(r#"{"username":1,"email":"a@b.co","password":"12345678"}"#)
                .contains("`username`")
        );
        assert!(message(
            r#"{"username":"ada","email":"a@b.co","password":"12345678","orgID":"x"}"#
        )
        .contains("unknown field `orgID`"));
        let parsed = http::parse_json::<RegisterRequest>(&request(
            r#"{"username":"ada","email":"a@b.co","password":"12345678","orgId":null}"#,
        ));
        assert!(parsed.is_ok_and(|input| input.org_id.is_none()));
    }
}
