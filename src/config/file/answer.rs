//! Serde mirror of the route actions the gateway answers itself: `redirect` and `respond`.

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `redirect = { to = "https://{host}{request_uri}", status = 308 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectFile {
    /// The `Location` template: `{scheme}`, `{host}`, `{path}`, `{rest}`, `{query}`,
    /// `{request_uri}`, `{query.NAME}`, `{header.NAME}`, `{claims.NAME}`.
    pub to: Text,
    /// 301, 302, 303, 307 or 308; default 302.
    pub status: Option<Spanned<i64>>,
}

/// `respond = { status = 200, body = "ok", content_type = "text/plain" }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondFile {
    /// 200 to 599; default 200.
    pub status: Option<Spanned<i64>>,
    /// The body, sent as is; default empty.
    pub body: Option<Text>,
    /// `Content-Type` of the body; default `text/plain; charset=utf-8`.
    pub content_type: Option<Text>,
}
