//! Serde mirror of a saga endpoint's steps (`[[endpoints.steps]]` in `bff/*.toml`).

use serde::Deserialize;
use toml::Spanned;

use crate::config::file::Text;

/// `[[endpoints.steps]]`: one local transaction of the saga.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// Key of the step's answer in the response, and its name in templates.
    pub name: Text,
    /// Upstream from gateway.toml.
    pub upstream: Text,
    /// HTTP method; default `POST`.
    pub method: Option<Text>,
    /// Path (and query) template.
    pub path: Text,
    /// JSON body template; strings in it are templates.
    pub body: Option<Spanned<toml::Value>>,
    /// Time for the call; default: the upstream's `timeout` (the endpoint deadline caps it).
    pub timeout: Option<Text>,
    /// Allow-list of field paths of the answer shown to the client; default: everything.
    pub fields: Option<Vec<Text>>,
    /// The call that undoes this step when a later step fails.
    pub compensate: Option<Spanned<CompensateFile>>,
}

/// `compensate = { method, path, body, attempts = 5, backoff = "100ms" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompensateFile {
    /// HTTP method; default `DELETE`.
    pub method: Option<Text>,
    /// Path template (may read this step's answer and earlier ones).
    pub path: Text,
    /// JSON body template.
    pub body: Option<Spanned<toml::Value>>,
    /// Upstream; default: the step's.
    pub upstream: Option<Text>,
    /// Tries before the saga is marked `stuck`; default `5`.
    pub attempts: Option<Spanned<i64>>,
    /// First wait between tries, doubled each time (at most 10 s); default `100ms`.
    pub backoff: Option<Text>,
}
