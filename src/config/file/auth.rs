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

/// `[auth.providers.NAME]`: one trusted token issuer and where its keys come from, or (with
/// `kind = "api_key"`) a file of API keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    /// `jwt` (default) or `api_key`.
    pub kind: Option<Text>,
    /// Required `iss` value (JWT).
    pub issuer: Option<Text>,
    /// Accepted `aud` values; a token must name at least one of them (JWT).
    pub audiences: Option<Spanned<Vec<Text>>>,
    /// Allow-list of signing algorithms, never taken from the token alone (JWT).
    pub algorithms: Option<Spanned<Vec<Text>>>,
    /// API keys: lines `CONSUMER KEY` or `CONSUMER sha256:HEX` (watched like other sources).
    pub keys_file: Option<Text>,
    /// API keys: the request header carrying the key; default `x-api-key`.
    pub header: Option<Text>,
    /// API keys: a query parameter that may carry the key (stripped before proxying); default:
    /// keys are never read from the query string.
    pub query: Option<Text>,
    /// API keys: the upstream request header carrying the consumer name.
    pub forward_consumer: Option<Text>,
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
