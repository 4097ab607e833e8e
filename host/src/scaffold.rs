//! `weft new <name>`: a new component that builds and passes its tests as
//! generated — a crate in `components/<name>` with a handler (a route that
//! stores a row and publishes an event), a harness test next to it, and
//! the entries that wire it in: the components workspace, `build.sh`, the
//! host's test targets (`just test-component <name>`) and `runtime.toml`.

use std::path::{Path, PathBuf};

/// Why a component could not be created. Nothing is written then.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a component and crate name.
    #[error("`{0}`: a component name is 1-40 of a-z, 0-9 and `-`, starting with a letter")]
    BadName(String),
    /// Not run from a Weft project's top folder.
    #[error("{0} is missing: run `weft new` from the project's top folder")]
    NotAProject(PathBuf),
    /// A component or folder of that name exists.
    #[error("{0} already exists")]
    Exists(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file to edit does not look as expected.
    #[error("{path}: cannot find {what} to add the component to")]
    Unexpected {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
}

/// What was created and changed.
#[derive(Debug)]
pub struct Created {
    /// New files.
    pub files: Vec<PathBuf>,
    /// Existing files given an entry.
    pub edited: Vec<PathBuf>,
}

const CARGO_TOML: &str = r#"[package]
name = "__NAME__"
description = "__NAME__: a Weft service component"
version.workspace = true
edition.workspace = true
rust-version.workspace = true
license.workspace = true
publish.workspace = true

[lib]
crate-type = ["cdylib"]

[lints]
workspace = true

[dependencies]
weft-sdk.workspace = true
serde.workspace = true
serde_json.workspace = true
"#;

const LIB_RS: &str = r#"//! __NAME__: a Weft service component. Table `items(id, name)`.
//!
//! Routes (below its prefix, `/__NAME__`):
//! - `GET /hello` → 200 `{"hello": "__NAME__"}`
//! - `POST /items` `{"name": text}` → 201 `{"id", "name"}`, and publishes
//!   `__NAME__.item_created` `{"id", "name"}`; 400 without a name
//! - `GET /items` → 200 `[{"id", "name"}]`, oldest first

use serde::{Deserialize, Serialize};
use serde_json::json;
use weft_sdk::db::{self, Value};
use weft_sdk::{events, http, Error, Event, Guest, Request, Response};

struct Component;

impl Guest for Component {
    fn migrations() -> Vec<String> {
        // Append only: the host remembers how many have run.
        vec!["CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)".into()]
    }

    fn on_event(_event: Event) -> Result<(), Error> {
        Ok(())
    }

    fn on_request(request: Request) -> Response {
        route(&request).unwrap_or_else(|response| response)
    }

    fn on_message(subject: String, _payload: String) -> Result<String, Error> {
        Err(Error::NotFound(format!("__NAME__ serves no subject `{subject}`")))
    }

    fn on_timer(_name: String) -> Result<(), Error> {
        Ok(())
    }
}

#[derive(Deserialize)]
struct NewItem {
    name: String,
}

#[derive(Serialize)]
struct Item {
    id: i64,
    name: String,
}

fn route(request: &Request) -> Result<Response, Response> {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/hello") => Ok(http::json(200, &json!({"hello": "__NAME__"}))),
        ("POST", "/items") => {
            let new: NewItem = http::parse_json(request)?;
            if new.name.trim().is_empty() {
                return Err(http::validation_failed("`name` must not be empty"));
            }
            let item = add(&new.name)?;
            events::publish("__NAME__.item_created", &item)?;
            Ok(http::json(201, &item))
        }
        ("GET", "/items") => Ok(http::json(200, &items()?)),
        _ => Ok(http::not_found()),
    }
}

fn add(name: &str) -> Result<Item, Error> {
    let rows = db::query(
        "INSERT INTO items (name) VALUES (?1) RETURNING id",
        &[Value::from(name)],
    )?;
    let id = match rows.first() {
        Some(row) => row.int("id")?,
        None => return Err(Error::Invalid("INSERT … RETURNING gave no row".into())),
    };
    Ok(Item {
        id,
        name: name.to_owned(),
    })
}

fn items() -> Result<Vec<Item>, Error> {
    db::query("SELECT id, name FROM items ORDER BY id", &[])?
        .iter()
        .map(|row| {
            Ok(Item {
                id: row.int("id")?,
                name: row.text("name")?,
            })
        })
        .collect()
}

weft_sdk::export!(Component);
"#;

const HARNESS_TEST_RS: &str = r#"//! __NAME__'s tests through the host's component harness
//! (`weft_host::testing`): the built component in a host of its own, a
//! temporary database and a capturing bus. Run with
//! `just test-component __NAME__`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use weft_host::testing::{ComponentTest, ComponentTestBuilder};

fn component() -> ComponentTestBuilder {
    ComponentTest::from_file(
        "__NAME__",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../components/target/wasm32-wasip2/release/__CRATE__.wasm"
        ),
    )
}

#[tokio::test]
async fn hello_answers() {
    let t = component().start().await.unwrap();
    let (status, body) = t.get_json("/hello", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"hello": "__NAME__"}));
    t.stop().await;
}

#[tokio::test]
async fn an_item_is_stored_and_announced() {
    let t = component().start().await.unwrap();
    let (status, item) = t
        .send_json("POST", "/items", None, Some(&json!({"name": "first"})))
        .await;
    assert_eq!(status, 201, "{item}");
    let (_, items) = t.get_json("/items", None).await;
    assert_eq!(items, json!([{"id": item["id"], "name": "first"}]));
    let published = t.take_published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].event_type, "__NAME__.item_created");
    assert_eq!(published[0].data, item);
    t.stop().await;
}

#[tokio::test]
async fn an_item_without_a_name_is_refused_and_nothing_is_kept() {
    let t = component().start().await.unwrap();
    let (status, body) = t
        .send_json("POST", "/items", None, Some(&json!({"name": " "})))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "validation_failed");
    assert!(t.rows("SELECT * FROM items").await.unwrap().rows.is_empty());
    assert!(t.published().is_empty());
    t.stop().await;
}
"#;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScaffoldError + '_ {
    move |source| ScaffoldError::Io {
        path: path.to_owned(),
        source,
    }
}

fn valid(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
}

/// Creates component `name` in the project at `root`.
pub fn new_component(root: &Path, name: &str) -> Result<Created, ScaffoldError> {
    if !valid(name) || name == "sdk" || name == "target" {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    let workspace = root.join("components/Cargo.toml");
    let build_sh = root.join("components/build.sh");
    let host_toml = root.join("host/Cargo.toml");
    let runtime = root.join("runtime.toml");
    for needed in [&workspace, &build_sh, &host_toml, &runtime] {
        if !needed.exists() {
            return Err(ScaffoldError::NotAProject(needed.clone()));
        }
    }
    let dir = root.join("components").join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.display().to_string()));
    }
    let runtime_text = std::fs::read_to_string(&runtime).map_err(io(&runtime))?;
    if runtime_text.contains(&format!("[components.{name}]")) {
        return Err(ScaffoldError::Exists(format!(
            "[components.{name}] in runtime.toml"
        )));
    }
    // Work out every edit before writing anything.
    let crate_name = name.replace('-', "_");
    let workspace_text = std::fs::read_to_string(&workspace).map_err(io(&workspace))?;
    let workspace_text = add_member(&workspace_text, name).ok_or(ScaffoldError::Unexpected {
        path: workspace.clone(),
        what: "the `members = [` list",
    })?;
    let build_text = std::fs::read_to_string(&build_sh).map_err(io(&build_sh))?;
    let build_text = add_to_components(&build_text, name).ok_or(ScaffoldError::Unexpected {
        path: build_sh.clone(),
        what: "the `COMPONENTS=(…)` line",
    })?;
    let mut host_text = std::fs::read_to_string(&host_toml).map_err(io(&host_toml))?;
    host_text.push_str(&format!(
        "\n[[test]]\nname = \"component-{name}\"\npath = \"../components/{name}/harness_test.rs\"\n"
    ));
    let mut runtime_text = runtime_text;
    runtime_text.push_str(&format!(
        "\n[components.{name}]\nwasm = \"components/target/wasm32-wasip2/release/{crate_name}.wasm\"\nroute = \"{name}\"\n\n[components.{name}.grants]\npublish = [\"{name}.item_created\"]\n"
    ));

    let fill = |template: &str| {
        template
            .replace("__NAME__", name)
            .replace("__CRATE__", &crate_name)
    };
    let files = [
        (dir.join("Cargo.toml"), fill(CARGO_TOML)),
        (dir.join("src/lib.rs"), fill(LIB_RS)),
        (dir.join("harness_test.rs"), fill(HARNESS_TEST_RS)),
    ];
    std::fs::create_dir_all(dir.join("src")).map_err(io(&dir))?;
    for (path, text) in &files {
        std::fs::write(path, text).map_err(io(path))?;
    }
    let edits = [
        (&workspace, workspace_text),
        (&build_sh, build_text),
        (&host_toml, host_text),
        (&runtime, runtime_text),
    ];
    for (path, text) in &edits {
        std::fs::write(path, text).map_err(io(path))?;
    }
    Ok(Created {
        files: files.into_iter().map(|(p, _)| p).collect(),
        edited: edits.iter().map(|(p, _)| (*p).clone()).collect(),
    })
}

/// Adds `"name",` to the `members = [ … ]` list.
fn add_member(text: &str, name: &str) -> Option<String> {
    let start = text.find("members = [")?;
    let end = start + text[start..].find(']')?;
    let mut out = String::with_capacity(text.len() + name.len() + 8);
    out.push_str(text[..end].trim_end());
    out.push_str(&format!("\n    \"{name}\",\n"));
    out.push_str(&text[end..]);
    Some(out)
}

/// Adds `name` to the `COMPONENTS=(…)` line.
fn add_to_components(text: &str, name: &str) -> Option<String> {
    let start = text.find("COMPONENTS=(")?;
    let end = start + text[start..].find(')')?;
    Some(format!("{} {name}{}", &text[..end], &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Result<tempfile::TempDir, std::io::Error> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("components/iam"))?;
        std::fs::create_dir_all(root.join("host"))?;
        std::fs::write(
            root.join("components/Cargo.toml"),
            "[workspace]\nmembers = [\n    \"sdk\",\n    \"iam\",\n]\n",
        )?;
        std::fs::write(
            root.join("components/build.sh"),
            "set -e\nCOMPONENTS=(iam lgm)\necho\n",
        )?;
        std::fs::write(
            root.join("host/Cargo.toml"),
            "[package]\nname = \"weft_host\"\n",
        )?;
        std::fs::write(root.join("runtime.toml"), "version = 1\n")?;
        Ok(dir)
    }

    #[test]
    fn a_component_is_created_and_wired_in() -> Result<(), Box<dyn std::error::Error>> {
        let dir = project()?;
        let root = dir.path();
        let created = new_component(root, "demo-app")?;
        assert_eq!(created.files.len(), 3);
        let read = |p: &str| std::fs::read_to_string(root.join(p));
        assert!(read("components/Cargo.toml")?.contains("    \"iam\",\n    \"demo-app\",\n]"));
        assert!(read("components/build.sh")?.contains("COMPONENTS=(iam lgm demo-app)"));
        assert!(read("host/Cargo.toml")?.contains(
            "name = \"component-demo-app\"\npath = \"../components/demo-app/harness_test.rs\""
        ));
        let runtime = read("runtime.toml")?;
        assert!(runtime.contains("[components.demo-app]\nwasm = \"components/target/wasm32-wasip2/release/demo_app.wasm\""));
        // The new runtime.toml still parses, with the component in it.
        let config = crate::config::Config::parse(&runtime, root)?;
        assert_eq!(
            config.components["demo-app"].grants.publish,
            ["demo-app.item_created"]
        );
        let lib = read("components/demo-app/src/lib.rs")?;
        assert!(lib.contains("\"demo-app.item_created\"") && !lib.contains("__NAME__"));
        assert!(read("components/demo-app/harness_test.rs")?.contains("/demo_app.wasm"));
        Ok(())
    }

    #[test]
    fn bad_names_and_existing_components_change_nothing() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = project()?;
        let root = dir.path();
        for bad in ["", "Demo", "1x", "a_b", "sdk", "x-", &"a".repeat(41)] {
            assert!(
                matches!(new_component(root, bad), Err(ScaffoldError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            new_component(root, "iam"),
            Err(ScaffoldError::Exists(_))
        ));
        assert_eq!(
            std::fs::read_to_string(root.join("components/build.sh"))?,
            "set -e\nCOMPONENTS=(iam lgm)\necho\n"
        );
        let elsewhere = tempfile::tempdir()?;
        assert!(matches!(
            new_component(elsewhere.path(), "demo"),
            Err(ScaffoldError::NotAProject(_))
        ));
        Ok(())
    }
}
