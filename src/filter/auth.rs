//! JWT authentication: providers (`[auth.providers.NAME]`), per-route rules (`auth = {...}`),
//! token extraction, verification with a cache, scope and claim checks, claim forwarding.
//!
//! Security rules kept here: algorithms come from the provider's allow-list and the key's
//! family, never from the token alone; `jku`, `jwk` and `x5u` header parameters are ignored and
//! `kid` is only a lookup key; client-sent copies of forwarded-claim headers are removed on every
//! route; error answers never echo the token.

pub mod api_key;
pub mod cache;
pub mod claims;
pub mod compile;
pub mod jwks;
pub mod keys;
pub mod provider;
pub mod token;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderValue};
use http::request::Parts;
use serde_json::Value;

use self::cache::{Accepted, TokenHash};
use self::claims::{ClaimPath, claim_matches};
use self::provider::{Provider, unix_now};
use self::token::Source;
use crate::error::GatewayError;
use crate::filter::Claims;

pub use self::compile::{compile_providers, compile_rule, secret_env_is_set, set_secret_fallback};
pub use self::provider::MintOptions;

/// The variable the shipped config reads the dev provider's secret from.
pub const DEV_SECRET_ENV: &str = "PORTICO_DEV_SECRET";
/// The documented secret `portico demo` and `portico token` use when `PORTICO_DEV_SECRET` is not
/// set. Public knowledge: `portico run` never falls back to it.
pub const DEMO_SECRET: &str = "portico-demo-secret-not-for-production-use";

/// Why a request failed authentication (mapped to 401/403 by `into_gateway_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token was sent.
    Missing,
    /// The request is malformed (two Authorization headers, token in the URL, empty bearer).
    InvalidRequest(&'static str),
    /// A token was sent and is not acceptable.
    InvalidToken(&'static str),
    /// The token is valid but lacks a scope or a claim the route requires.
    Insufficient(&'static str),
    /// The token is valid but lacks a scope the route requires: the route's scopes,
    /// space-separated (RFC 6750 `scope="..."`).
    MissingScope(Box<str>),
    /// A route that takes only API keys got none.
    MissingKey,
    /// The API key is not known (never issued, or revoked).
    InvalidKey,
}

impl From<AuthError> for GatewayError {
    fn from(e: AuthError) -> GatewayError {
        let challenge = |error: Option<&str>, description: &str| {
            let text = match error {
                None => "Bearer realm=\"portico\"".to_string(),
                Some(e) => format!(
                    "Bearer realm=\"portico\", error=\"{e}\", error_description=\"{description}\""
                ),
            };
            HeaderValue::from_str(&text)
                .unwrap_or(HeaderValue::from_static("Bearer realm=\"portico\""))
        };
        match e {
            AuthError::Missing => GatewayError::Unauthorized {
                challenge: challenge(None, ""),
                detail: "This route needs a bearer token.",
            },
            AuthError::InvalidRequest(why) => GatewayError::Unauthorized {
                challenge: challenge(Some("invalid_request"), why),
                detail: why,
            },
            AuthError::InvalidToken(why) => GatewayError::Unauthorized {
                challenge: challenge(Some("invalid_token"), why),
                detail: why,
            },
            AuthError::Insufficient(why) => GatewayError::Forbidden {
                challenge: challenge(Some("insufficient_scope"), why),
                detail: why,
                scope: None,
            },
            AuthError::MissingScope(scope) => {
                let why = "the token lacks a required scope";
                // RFC 6750 §3: `scope` names the scopes the resource needs.
                let text = format!(
                    "Bearer realm=\"portico\", error=\"insufficient_scope\", error_description=\"{why}\", scope=\"{scope}\""
                );
                GatewayError::Forbidden {
                    challenge: HeaderValue::from_str(&text)
                        .unwrap_or_else(|_| challenge(Some("insufficient_scope"), why)),
                    detail: why,
                    scope: Some(scope),
                }
            }
            AuthError::MissingKey => GatewayError::Unauthorized {
                challenge: HeaderValue::from_static("ApiKey realm=\"portico\""),
                detail: "This route needs an API key.",
            },
            AuthError::InvalidKey => GatewayError::Unauthorized {
                challenge: HeaderValue::from_static("ApiKey realm=\"portico\""),
                detail: "The API key is not valid.",
            },
        }
    }
}

/// Providers by name, and the headers every request loses before guards run.
#[derive(Debug, Default)]
pub struct AuthRuntime {
    /// Compiled JWT providers.
    pub providers: BTreeMap<Arc<str>, Arc<Provider>>,
    /// Compiled API-key providers (`kind = "api_key"`).
    pub api_keys: BTreeMap<Arc<str>, Arc<api_key::ApiKeyProvider>>,
    /// Every `forward_claims` and `forward_consumer` header of every provider: removed from
    /// every request (even on public routes) so a client can never pose as someone else
    /// upstream.
    pub forwarded_headers: Box<[http::HeaderName]>,
    /// Key files the providers were built from (watched for reloads like gateway.toml).
    pub files: Vec<std::path::PathBuf>,
}

/// Who a request was authenticated as.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Claims of a verified token (JWT providers).
    pub claims: Option<Claims>,
    /// The consumer of a verified API key.
    pub consumer: Option<Arc<str>>,
}

/// A compiled `auth = {...}` of a route or BFF profile.
#[derive(Debug)]
pub struct AuthRule {
    /// JWT providers whose tokens are accepted (any one).
    pub providers: Box<[Arc<Provider>]>,
    /// API-key providers whose keys are accepted (any one); a request presenting a key is
    /// checked against these, one without a key against the JWT providers.
    pub api_keys: Box<[Arc<api_key::ApiKeyProvider>]>,
    /// Scopes all required.
    pub scopes: Box<[Box<str>]>,
    /// Claim conditions all required.
    pub claims: Box<[(ClaimPath, Value)]>,
    /// Cookie names the providers read tokens from.
    pub cookies: Box<[Box<str>]>,
}

impl AuthRule {
    /// Checks the request's API key (when it presents one a provider of the rule reads) or
    /// else its token; see [`AuthRule::authenticate_token`].
    pub async fn authenticate(&self, parts: &mut Parts) -> Result<Verified, AuthError> {
        if !self.api_keys.is_empty() {
            let presented = self.api_keys.iter().find(|p| p.presented(parts));
            match presented {
                Some(p) => return self.authenticate_key(p, parts),
                None if self.providers.is_empty() => return Err(AuthError::MissingKey),
                None => {}
            }
        }
        let claims = self.authenticate_token(parts).await?;
        Ok(Verified {
            claims: Some(claims),
            consumer: None,
        })
    }

    /// An API key from `provider`, first among the rule's key providers that knows it.
    fn authenticate_key(
        &self,
        provider: &api_key::ApiKeyProvider,
        parts: &mut Parts,
    ) -> Result<Verified, AuthError> {
        let consumer = provider.authenticate(parts)?;
        // A key carries no claims: a rule requiring scopes or claim values refuses it.
        self.check(&serde_json::Map::new(), &[])?;
        Ok(Verified {
            claims: None,
            consumer: Some(consumer),
        })
    }

    /// Finds and verifies the request's token, checks scopes and claims, then rewrites the
    /// request head for upstream (forwarded claims, token stripping).
    pub async fn authenticate_token(&self, parts: &mut Parts) -> Result<Claims, AuthError> {
        let (provider, accepted, cookie) = {
            let (raw, source) = token::find(&parts.headers, parts.uri.query(), &self.cookies)?;
            let (provider, accepted) = self.verified(raw).await?;
            let cookie = match source {
                Source::Header => None,
                Source::Cookie(name) => Some(name.to_owned()),
            };
            (provider, accepted, cookie)
        };
        self.check(&accepted.claims, &accepted.scopes)?;
        for (header, value) in accepted.forwarded.iter() {
            parts.headers.insert(header.clone(), value.clone());
        }
        if provider.settings.strip_token {
            match cookie {
                None => {
                    parts.headers.remove(AUTHORIZATION);
                }
                Some(name) => token::remove_cookie(&mut parts.headers, &name),
            }
        }
        Ok(accepted.claims)
    }

    /// The request's verified claims, without checking scopes or claim conditions and without
    /// editing the request (for routing on claims; see `route::conditions`).
    pub async fn verified_claims(
        &self,
        headers: &http::HeaderMap,
        query: Option<&str>,
    ) -> Result<Claims, AuthError> {
        let (raw, _) = token::find(headers, query, &self.cookies)?;
        Ok(self.verified(raw).await?.1.claims)
    }

    /// The provider that accepts a found token, and its claims. The caches are asked first, by
    /// the token's digest: a cached token passed the alphabet check ([`token::text`]) when it
    /// was verified, so a hot token is not scanned again. Else the token is checked, and
    /// verified by the provider whose issuer it names.
    async fn verified(&self, raw: &[u8]) -> Result<(&Arc<Provider>, Accepted), AuthError> {
        let hash = TokenHash::of(raw);
        let now = unix_now();
        let hit = self
            .providers
            .iter()
            .find_map(|p| p.cached(hash, now).map(|hit| (p, hit)));
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let token = token::text(raw)?;
        let provider = self.pick(token)?;
        // Every cache was just asked: straight to the signature check.
        Ok((provider, provider.verify_uncached(token, hash, now).await?))
    }

    /// The provider to verify a token with: the only one, else the one whose issuer the (not
    /// yet verified) token names.
    fn pick(&self, token: &str) -> Result<&Arc<Provider>, AuthError> {
        if let [only] = &*self.providers {
            return Ok(only);
        }
        let iss =
            unverified_issuer(token).ok_or(AuthError::InvalidToken("the token is malformed"))?;
        self.providers
            .iter()
            .find(|p| p.settings.issuer == iss)
            .ok_or(AuthError::InvalidToken(
                "the token's issuer is not accepted",
            ))
    }

    /// Scopes (`granted`: the token's, [`claims::granted_scopes`]) and claim conditions.
    pub fn check(
        &self,
        claims: &serde_json::Map<String, Value>,
        granted: &[Box<str>],
    ) -> Result<(), AuthError> {
        if !self.scopes.iter().all(|s| granted.contains(s)) {
            return Err(AuthError::MissingScope(self.scopes.join(" ").into()));
        }
        let claims_ok = self
            .claims
            .iter()
            .all(|(path, want)| path.lookup(claims).is_some_and(|v| claim_matches(v, want)));
        if !claims_ok {
            return Err(AuthError::Insufficient(
                "the token lacks a required claim value",
            ));
        }
        Ok(())
    }
}

/// The `iss` of a token's payload, read without verification (only to pick a provider).
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}
