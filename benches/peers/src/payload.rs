//! What the load benchmark sends: GitHub `issues.opened` deliveries with
//! 1 KiB JSON bodies, signed with a public bench-only secret. Shared by
//! `gen` (which writes them) and `serve` (whose `full` mode validates them
//! against [`schema`] and deserializes them into [`IssuesEvent`]).

use serde::Deserialize;
use serde_json::{json, Value};

/// The secret both sides use. Public: this is a benchmark, not a receiver.
pub(crate) const SECRET: &str = "webhook-guard load bench secret (public, never use it for real traffic)";
/// The route every mode serves.
pub(crate) const PATH: &str = "/webhook";
/// The `X-GitHub-Event` of every delivery.
pub(crate) const EVENT: &str = "issues";
/// The body's `action`: with [`EVENT`], the `full` mode's `issues.opened` handler.
pub(crate) const ACTION: &str = "opened";
/// The exact size of every body, in bytes.
pub(crate) const BODY_BYTES: usize = 1024;

/// The body of delivery `n`: a compact, single-line JSON `issues` event,
/// padded with its issue's `body` text to exactly [`BODY_BYTES`]. Bodies of
/// different `n` differ, so (GitHub's dedupe key being a hash of the body)
/// each is a distinct delivery.
pub(crate) fn body(n: u64) -> String {
    let event = |text: &str| -> Value {
        json!({
            "action": ACTION,
            "issue": {
                "number": n,
                "title": format!("Load test issue {n}"),
                "state": "open",
                "user": {"login": "octocat", "id": 583231},
                "labels": [{"name": "bench", "color": "ededed"}],
                "body": text,
            },
            "repository": {"id": 1296269, "full_name": "octocat/load-test", "private": false},
            "sender": {"login": "octocat", "id": 583231},
        })
    };
    let bare = event("").to_string();
    // The padding is plain ASCII, so it adds exactly its length once
    // serialized. A body that is already too long (an absurd `n`) is sent
    // as it is.
    let padding = "x".repeat(BODY_BYTES.saturating_sub(bare.len()));
    event(&padding).to_string()
}

/// The `full` mode's JSON Schema for every delivery on the route: the
/// shape of an `issues` event, with bounded strings and a constrained
/// repository name, as a real receiver would check it.
pub(crate) fn schema() -> Value {
    let user = json!({
        "type": "object",
        "required": ["login", "id"],
        "properties": {
            "login": {"type": "string", "minLength": 1, "maxLength": 39},
            "id": {"type": "integer", "minimum": 1},
        },
    });
    json!({
        "type": "object",
        "required": ["action", "issue", "repository", "sender"],
        "properties": {
            "action": {"enum": ["opened", "edited", "closed", "reopened", "labeled"]},
            "issue": {
                "type": "object",
                "required": ["number", "title", "state", "user", "body"],
                "properties": {
                    "number": {"type": "integer", "minimum": 1},
                    "title": {"type": "string", "minLength": 1, "maxLength": 256},
                    "state": {"enum": ["open", "closed"]},
                    "user": user,
                    "labels": {
                        "type": "array",
                        "maxItems": 100,
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string", "maxLength": 50},
                                "color": {"type": "string", "pattern": "^[0-9a-f]{6}$"},
                            },
                        },
                    },
                    "body": {"type": ["string", "null"], "maxLength": 65536},
                },
            },
            "repository": {
                "type": "object",
                "required": ["id", "full_name"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "full_name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"},
                    "private": {"type": "boolean"},
                },
            },
            "sender": user,
        },
    })
}

/// The `issues` payload, as far as the `full` mode's handler cares.
#[derive(Debug, Deserialize)]
pub(crate) struct IssuesEvent {
    pub(crate) action: String,
    pub(crate) issue: Issue,
    pub(crate) repository: Repository,
    pub(crate) sender: User,
}

/// An issue.
#[derive(Debug, Deserialize)]
pub(crate) struct Issue {
    pub(crate) number: u64,
    pub(crate) title: String,
    pub(crate) state: String,
    pub(crate) user: User,
    #[serde(default)]
    pub(crate) labels: Vec<Label>,
    pub(crate) body: Option<String>,
}

/// An issue label.
#[derive(Debug, Deserialize)]
pub(crate) struct Label {
    pub(crate) name: String,
}

/// A repository.
#[derive(Debug, Deserialize)]
pub(crate) struct Repository {
    pub(crate) id: u64,
    pub(crate) full_name: String,
}

/// A GitHub account.
#[derive(Debug, Deserialize)]
pub(crate) struct User {
    pub(crate) login: String,
    pub(crate) id: u64,
}
