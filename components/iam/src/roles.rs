//! Roles in a token. Everyone has `user`; an org's founder (and whoever an
//! admin makes one later) has `org_admin`, stored with the account. `admin`
//! needs both: the account was created by the operator (`POST /admins`, role
//! stored) and its username is listed in config `admins` (compared
//! case-insensitively), so neither a squatter nor a config edit alone makes
//! an admin, and taking a name off the list takes the role away.

use weft_sdk::log;

/// The role every user has.
pub const USER: &str = "user";
/// The role of the operator-created accounts listed in config `admins`.
pub const ADMIN: &str = "admin";
/// The role of an organisation's founder: may invite into it.
pub const ORG_ADMIN: &str = "org_admin";

/// The roles of `username`, whose account stores `stored`, given config
/// `admins` as it arrives.
pub fn for_user(username: &str, stored: &[String], admins_config: Option<&str>) -> Vec<String> {
    let mut roles = vec![USER.to_string()];
    if stored.iter().any(|role| role == ORG_ADMIN) {
        roles.push(ORG_ADMIN.to_string());
    }
    if stored.iter().any(|role| role == ADMIN) && is_listed(username, admins_config) {
        roles.push(ADMIN.to_string());
    }
    roles
}

/// Whether `username` is listed in config `admins`: such a name is the
/// operator's to create, never open to registration.
pub fn is_listed(username: &str, admins_config: Option<&str>) -> bool {
    admins(admins_config)
        .iter()
        .any(|admin| admin.eq_ignore_ascii_case(username))
}

/// The admin usernames in config `admins`: a TOML list arrives as a JSON
/// array of strings (`["alice","bob"]`); a plain TOML string is taken as a
/// comma-separated list. Any other list or a table counts as no admins
/// (logged).
fn admins(config: Option<&str>) -> Vec<String> {
    let Some(text) = config.map(str::trim).filter(|text| !text.is_empty()) else {
        return Vec::new();
    };
    if let Ok(names) = serde_json::from_str::<Vec<String>>(text) {
        return names
            .into_iter()
            .map(|name| name.trim().to_string())
            .collect();
    }
    if text.starts_with('[') || text.starts_with('{') {
        log::warn("config `admins` is neither a list of usernames nor a string; nobody is admin");
        return Vec::new();
    }
    text.split(',')
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(roles: &[&str]) -> Vec<String> {
        roles.iter().map(|role| role.to_string()).collect()
    }

    /// The roles of an operator-created account named `username`.
    fn roles(username: &str, config: Option<&str>) -> Vec<String> {
        for_user(username, &stored(&[USER, ADMIN]), config)
    }

    #[test]
    fn everyone_is_a_user() {
        assert_eq!(roles("bob", None), ["user"]);
        assert_eq!(roles("bob", Some("")), ["user"]);
        assert_eq!(roles("bob", Some(r#"["alice"]"#)), ["user"]);
        assert_eq!(roles("bob", Some("[]")), ["user"]);
    }

    #[test]
    fn a_listed_name_alone_is_no_admin() {
        assert_eq!(
            for_user("alice", &stored(&[USER]), Some(r#"["alice"]"#)),
            ["user"]
        );
        assert_eq!(
            for_user("alice", &stored(&[USER, ORG_ADMIN]), Some(r#"["alice"]"#)),
            ["user", "org_admin"]
        );
    }

    #[test]
    fn listed_usernames_are_admins_case_insensitively() {
        assert_eq!(roles("alice", Some(r#"["alice"]"#)), ["user", "admin"]);
        assert_eq!(
            roles("ALICE", Some(r#"["Alice","bob"]"#)),
            ["user", "admin"]
        );
        assert_eq!(
            roles("bob", Some(r#"[ "alice" , " bob " ]"#)),
            ["user", "admin"]
        );
        assert_eq!(roles("alic", Some(r#"["alice"]"#)), ["user"]);
        assert!(is_listed("Alice", Some(r#"["alice"]"#)));
        assert!(!is_listed("alic", Some(r#"["alice"]"#)));
    }

    #[test]
    fn a_plain_string_is_a_comma_list() {
        assert_eq!(roles("alice", Some("alice")), ["user", "admin"]);
        assert_eq!(roles("bob", Some("alice, Bob")), ["user", "admin"]);
        assert_eq!(roles("carol", Some("alice, bob")), ["user"]);
        assert_eq!(roles("1234", Some("1234")), ["user", "admin"]);
    }

    #[test]
    fn other_json_means_no_admins() {
        assert_eq!(roles("alice", Some(r#"{"alice": true}"#)), ["user"]);
        assert_eq!(roles("alice", Some("[1, 2]")), ["user"]);
        assert_eq!(roles("alice", Some("[alice]")), ["user"]);
    }
}
