//! Serde mirror of one client profile file (`bff/NAME.toml`): shapes only, checked in `compile`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::config::file::Text;
use crate::config::file::auth::AuthRuleFile;
use crate::config::file::rate_limit::RateLimitRefFile;
use crate::config::file::script::ScriptRefs;

/// One profile file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    /// Profile name, also the value of `x-client` that selects it; default: the file stem.
    pub name: Option<Text>,
    /// Path prefix the profile owns (`/mobile` serves `/mobile/home`); default: none.
    pub mount: Option<Text>,
    /// Budget for a whole response; default `1s`.
    pub deadline: Option<Text>,
    /// Largest backend answer a part reads; default `1MiB`.
    pub max_part_bytes: Option<Text>,
    /// `User-Agent` patterns (`*` wildcards, case-insensitive) that select this profile on
    /// unmounted paths when no `x-client` header is sent.
    #[serde(default)]
    pub user_agents: Vec<Text>,
    /// JWT rule for every endpoint (same table as a route's `auth`).
    pub auth: Option<Spanned<AuthRuleFile>>,
    /// Rate-limit policy name(s) for every endpoint.
    pub rate_limit: Option<Spanned<RateLimitRefFile>>,
    /// `[ip_lists.NAME]` (in gateway.toml) every endpoint's clients must pass.
    pub ip_list: Option<Text>,
    /// `[cors.NAME]` (in gateway.toml) for every endpoint.
    pub cors: Option<Text>,
    /// `Cache-Control` of every endpoint's answers; default `private, no-store`.
    pub cache_control: Option<Text>,
    /// Script names from gateway.toml's `[scripts]` for every endpoint, run in order.
    pub scripts: Option<ScriptRefs>,
    /// `[[endpoints]]`.
    #[serde(default)]
    pub endpoints: Vec<EndpointFile>,
}

/// `[[endpoints]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointFile {
    /// HTTP method; default `GET` (which also takes `HEAD`).
    pub method: Option<Text>,
    /// Path template below the mount, e.g. `/orders/{id}`.
    pub path: Text,
    /// Overrides the profile's `deadline`.
    pub deadline: Option<Text>,
    /// Overrides the profile's `auth`.
    pub auth: Option<Spanned<AuthRuleFile>>,
    /// Overrides the profile's `rate_limit`.
    pub rate_limit: Option<Spanned<RateLimitRefFile>>,
    /// Overrides the profile's `ip_list`.
    pub ip_list: Option<Text>,
    /// Overrides the profile's `cors`.
    pub cors: Option<Text>,
    /// Overrides the profile's `cache_control`.
    pub cache_control: Option<Text>,
    /// Overrides the profile's `scripts`.
    pub scripts: Option<ScriptRefs>,
    /// `[[endpoints.parts]]`: the backend calls whose answers make up the response.
    #[serde(default)]
    pub parts: Vec<PartFile>,
    /// `true`: the endpoint runs `steps` as a saga (instead of `parts`).
    pub saga: Option<Spanned<bool>>,
    /// `[[endpoints.steps]]` of a saga endpoint.
    #[serde(default)]
    pub steps: Vec<crate::saga::file::StepFile>,
}

/// `[[endpoints.parts]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartFile {
    /// Key of the part in the response, and its name in templates and headers.
    pub name: Text,
    /// Upstream from gateway.toml.
    pub upstream: Text,
    /// Path (and query) template sent to the upstream.
    pub path: Text,
    /// HTTP method; default `GET`.
    pub method: Option<Text>,
    /// JSON body for writes; strings in it are templates.
    pub body: Option<Spanned<toml::Value>>,
    /// Client request headers passed to the backend.
    #[serde(default)]
    pub headers: Vec<Text>,
    /// Pass the client's `Authorization` header; default `false`.
    pub forward_auth: Option<bool>,
    /// Headers set on the backend request; values are templates.
    #[serde(default)]
    pub set_headers: BTreeMap<Spanned<String>, Text>,
    /// Time for the whole call (head and body); default: the upstream's `timeout`.
    pub timeout: Option<Text>,
    /// A failed required part fails the response; default `false`.
    pub required: Option<bool>,
    /// Allow-list of field paths (`id`, `address.city`, `items[].id`); default: everything.
    pub fields: Option<Vec<Text>>,
    /// Cap on every array in the part's answer.
    pub max_items: Option<Spanned<i64>>,
    /// Renames: `{ "avatar_url" = "avatar", "items[].status" = "state" }`.
    #[serde(default)]
    pub rename: BTreeMap<Spanned<String>, Text>,
    /// Merge the part's object into the top level; default `false`.
    pub flatten: Option<bool>,
    /// Value used when the (optional) part fails.
    pub default: Option<Spanned<toml::Value>>,
    /// Value served when the (optional) part fails or misses the budget, reported as
    /// `fallback` in `portico-partial` and `_partial` (unlike `default`).
    pub fallback: Option<Spanned<toml::Value>>,
    /// Idempotent parts: a second try to another endpoint starts when the first has not
    /// answered after this long; the first answer wins. Shorter than the deadline.
    pub hedge_after: Option<Text>,
    /// Overrides the profile's `max_part_bytes`.
    pub max_bytes: Option<Text>,
    /// Per-part answer cache.
    pub cache: Option<Spanned<CacheFile>>,
}

/// `cache = { ttl = "5s", stale_if_error = "1m" }` of a part.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    /// How long an answer is served without calling the backend.
    pub ttl: Text,
    /// How long past `ttl` the last good answer is served when the backend fails; default `0`.
    pub stale_if_error: Option<Text>,
}
