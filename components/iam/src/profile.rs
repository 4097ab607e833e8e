//! `GET /me` (auth required): the caller's profile
//! `{id, username, email, orgId, roles, createdAt}` — never the hash.
//! `roles` are the token's.

use serde::Serialize;
use weft_sdk::{http, Request, Response};

use crate::users::{self, Lookup, User};

#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Profile<'a> {
    id: &'a str,
    username: &'a str,
    email: &'a str,
    org_id: &'a str,
    roles: &'a [String],
    created_at: &'a str,
}

pub fn handle(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let user = users::find_live(Lookup::Id(&caller.user_id))?.ok_or_else(gone)?;
    Ok(http::json(200, &profile(&user, &caller.roles)))
}

/// 401 for a valid token whose user no longer exists (soft-deleted).
pub fn gone() -> Response {
    http::unauthorized("the user of this token no longer exists")
}

fn profile<'a>(user: &'a User, roles: &'a [String]) -> Profile<'a> {
    Profile {
        id: &user.base.id,
        username: &user.username,
        email: &user.email,
        org_id: &user.base.owner.org_id,
        roles,
        created_at: &user.base.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_sdk::entity::{BaseEntity, Owner};

    #[test]
    fn profiles_never_show_the_hash() {
        let mut base = BaseEntity::with_id(
            "u1".into(),
            Owner {
                user_id: "u1".into(),
                org_id: "o1".into(),
            },
        );
        base.created_at = "2026-11-25T10:00:00Z".into();
        let user = User {
            base,
            username: "ada".into(),
            email: "ada@example.com".into(),
            password_hash: "$argon2id$secret".into(),
            roles: vec!["user".into()],
        };
        let roles = vec!["user".to_string()];
        let value = serde_json::to_value(profile(&user, &roles)).expect("serialises");
        assert_eq!(
            value,
            json!({"id": "u1", "username": "ada", "email": "ada@example.com", "orgId": "o1",
                   "roles": ["user"], "createdAt": "2026-11-25T10:00:00Z"})
        );
        assert!(!value.to_string().contains("argon2"));
    }
}
