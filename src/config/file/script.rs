//! Serde mirror of `[scripts.NAME]` (sandboxed Luau scripts) and the `scripts = [...]` list that
//! routes and BFF profiles and endpoints share.

use toml::Spanned;

use super::Text;

/// `[scripts.NAME]`: one script file and its per-call limits.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptFile {
    /// The Luau source, relative to the config file's folder. Watched: editing it reloads.
    pub file: Text,
    /// Time one hook call may run before it is cut; default `1ms`.
    pub budget: Option<Text>,
    /// Largest response body a `buffer_body = true` script is handed; default `1MiB`.
    pub max_body: Option<Text>,
}

/// `scripts = ["a", "b"]`: script names, run in order.
pub type ScriptRefs = Spanned<Vec<Text>>;
