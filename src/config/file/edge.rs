//! Serde mirror of the named edge policies: `[ip_lists.NAME]` and `[cors.NAME]`.

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `[ip_lists.NAME]`: an allow list or a deny list of networks (exactly one of the two keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpListFile {
    /// Only these networks pass; every other client gets 403.
    pub allow: Option<Spanned<Vec<Text>>>,
    /// These networks get 403; every other client passes.
    pub deny: Option<Spanned<Vec<Text>>>,
}

/// `[cors.NAME]`: one cross-origin policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    /// Allowed origins: exact (`https://app.example.com`), one-label wildcards
    /// (`https://*.example.com`), or `"*"` (any origin, never with credentials).
    pub origins: Spanned<Vec<Text>>,
    /// Methods a preflight may ask for; default `["GET", "HEAD", "POST"]`.
    pub methods: Option<Spanned<Vec<Text>>>,
    /// Request headers a preflight may ask for; default none beyond the CORS-safelisted ones.
    pub headers: Option<Spanned<Vec<Text>>>,
    /// Response headers scripts in the browser may read (`Access-Control-Expose-Headers`).
    pub expose_headers: Option<Spanned<Vec<Text>>>,
    /// Whether cookies and credentials may be sent (`Access-Control-Allow-Credentials`);
    /// default `false`.
    pub credentials: Option<bool>,
    /// How long a browser may cache a preflight answer (`Access-Control-Max-Age`); default: not
    /// sent (the browser's default, 5 s).
    pub max_age: Option<Text>,
}
