//! Serde mirror of `[auth.providers.NAME]` and of the `auth = {...}` table that routes and BFF
//! profiles share.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `[auth]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// `[auth.providers.NAME]`: token issuers the gateway trusts.
    #[serde(default)]
    pub providers: BTreeMap<Spanned<String>, ProviderFile>,
}

/// `[auth.providers.NAME]`: one trusted token issuer and where its keys come from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    /// Required `iss` value.
    pub issuer: Text,
    /// Accepted `aud` values; a token must name at least one of them.
    pub audiences: Spanned<Vec<Text>>,
    /// Allow-list of signing algorithms (never taken from the token alone).
    pub algorithms: Spanned<Vec<Text>>,
    /// HMAC secret from this environment variable.
    pub secret_env: Option<Text>,
    /// HMAC secret from this file (trailing newline ignored).
    pub secret_file: Option<Text>,
    /// PEM public key (RSA, EC or Ed25519).
    pub public_key_file: Option<Text>,
    /// JWK set on disk.
    pub jwks_file: Option<Text>,
    /// JWK set fetched over HTTP(S).
    pub jwks_url: Option<Text>,
    /// How often a `jwks_url` key set is refreshed; default `5m`.
    pub jwks_refresh: Option<Text>,
    /// Least time between two fetches caused by unknown `kid`s; default `30s`.
    pub jwks_cooldown: Option<Text>,
    /// Time allowed for one JWKS fetch; default `5s`.
    pub jwks_timeout: Option<Text>,
    /// PEM private key used only by `portico token` to mint tokens.
    pub private_key_file: Option<Text>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`; default `30s`.
    pub leeway: Option<Text>,
    /// Cookie that may carry the token when there is no `Authorization` header.
    pub cookie: Option<Text>,
    /// Claim path → upstream request header.
    #[serde(default)]
    pub forward_claims: BTreeMap<Spanned<String>, Text>,
    /// Drop the token (Authorization header, token cookie) before forwarding; default `false`.
    pub strip_token: Option<bool>,
    /// Verified tokens remembered per provider; default `10000`, `0` disables the cache.
    pub cache_size: Option<Spanned<i64>>,
}

/// `auth = { provider = "a" }` or `{ providers = ["a", "b"], scopes = [...], claims = {...} }`
/// on a route or a BFF profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRuleFile {
    /// The one provider whose tokens are accepted.
    pub provider: Option<Text>,
    /// Several providers; a token from any of them is accepted.
    pub providers: Option<Spanned<Vec<Text>>>,
    /// Scopes the token must all carry (`scope` space-separated or `scp` array).
    #[serde(default)]
    pub scopes: Vec<Text>,
    /// Claim conditions: equality, or membership when the claim is an array.
    #[serde(default)]
    pub claims: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}
