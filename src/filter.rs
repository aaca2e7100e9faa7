//! Request filters ("guards"), run in a fixed order before a route's action:
//! IP list → CORS preflight → client certificate → authentication → rate limits. Routes and
//! BFF endpoints share them.

pub mod auth;
pub mod client_cert;
pub mod cors;
pub mod edge;
pub mod headers;
pub mod ip_list;
pub mod prehashed;
pub mod rate_limit;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::request::Parts;
use toml::Spanned;

use crate::config::diag::Diagnostics;
use crate::config::file::Text;
use crate::config::file::auth::AuthRuleFile;
use crate::config::file::rate_limit::RateLimitRefFile;
use crate::conn::ConnInfo;
use crate::error::GatewayError;
use crate::net::Cidr;

use self::auth::AuthRule;
use self::rate_limit::{KeyInput, Policy, RateLimitHeaders};

/// Verified JWT claims (a JSON object), shared by later phases: rate-limit keys, claim
/// forwarding, BFF templates.
pub type Claims = Arc<serde_json::Map<String, serde_json::Value>>;

/// The filters a request must pass before the action of its route or BFF endpoint runs.
#[derive(Debug, Default)]
pub struct Guards {
    /// Whether a verified client certificate is required (checked first).
    pub client_cert: client_cert::ClientCertRule,
    /// JWT requirement; `None` for public routes.
    pub auth: Option<AuthRule>,
    /// Rate-limit policies; every one must admit.
    pub rate_limits: Box<[Arc<Policy>]>,
    /// Route id or BFF profile name: the bucket of `route` keys.
    pub scope: Arc<str>,
    /// `ip_list = "NAME"`: checked on the client address before anything else.
    pub ip_list: Option<Arc<ip_list::IpList>>,
    /// `cors = "NAME"`: answers preflights and decorates answers.
    pub cors: Option<Arc<cors::Cors>>,
}

/// What the guards read besides a route's own [`Guards`]: process-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct GuardEnv<'a> {
    /// Peers whose forwarding headers are trusted (the client IP of `ip` rate-limit keys).
    pub trusted_proxies: &'a [Cidr],
    /// Identity headers only the gateway sets (forwarded claims): client copies are removed on
    /// every route, authenticated or not.
    pub forwarded_claims: &'a [http::HeaderName],
    /// The header carrying the verified client certificate (`[server.tls]`), if configured.
    pub forward_client_cert: Option<&'a http::HeaderName>,
}

/// What the guards learned about the caller.
#[derive(Debug, Default, Clone)]
pub struct Identity {
    /// Claims of a verified token, when the route asks for authentication.
    pub claims: Option<Claims>,
    /// The consumer of a verified API key.
    pub consumer: Option<Arc<str>>,
    /// RateLimit fields for the response, from policies with `headers = "always"`.
    pub rate_limit: Option<RateLimitHeaders>,
}

/// The compiled parts guards refer to.
#[derive(Debug, Clone, Copy)]
pub struct GuardContext<'a> {
    /// Auth providers (JWT and API key) by name.
    pub auth: &'a auth::AuthRuntime,
    /// Rate-limit policies by name.
    pub policies: &'a BTreeMap<Arc<str>, Arc<Policy>>,
    /// IP lists and CORS policies by name.
    pub edge: &'a edge::EdgePolicies,
    /// Every provider name in the config, compiled or not: a use of one that failed is not
    /// reported again (its definition's error already was).
    pub declared_providers: &'a [&'a str],
    /// Every rate-limit policy name in the config, compiled or not.
    pub declared_policies: &'a [&'a str],
}

/// The guard keys of a route, BFF profile or endpoint, as written.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardRefs<'f> {
    /// `auth = {...}`.
    pub auth: Option<&'f Spanned<AuthRuleFile>>,
    /// `rate_limit = ...`.
    pub rate_limit: Option<&'f Spanned<RateLimitRefFile>>,
    /// `ip_list = "NAME"`.
    pub ip_list: Option<&'f Text>,
    /// `cors = "NAME"`.
    pub cors: Option<&'f Text>,
}

/// Compiles the `auth = {...}` table and the `rate_limit`, `ip_list` and `cors` references of
/// a route or BFF profile. `key` is the config key path of the owner (e.g. `routes[3]`),
/// `scope` its id (the bucket of `route` rate-limit keys). Problems are recorded in `d`.
pub fn compile_guards(
    d: &mut Diagnostics,
    key: &str,
    refs: GuardRefs<'_>,
    scope: &str,
    ctx: GuardContext<'_>,
) -> Guards {
    let GuardRefs {
        auth,
        rate_limit,
        ip_list,
        cors,
    } = refs;
    let ip_list = ctx.edge.ip_list(d, ip_list, &format!("{key}.ip_list"));
    let cors = ctx.edge.cors(d, cors, &format!("{key}.cors"));
    let auth = auth.and_then(|a| auth::compile_rule(d, &format!("{key}.auth"), a, ctx));
    let rate_limits = rate_limit
        .map(|r| {
            rate_limit::compile::compile_refs(
                d,
                &format!("{key}.rate_limit"),
                r,
                ctx,
                auth.is_some(),
            )
        })
        .unwrap_or_default();
    Guards {
        // Routes set it from their own `client_cert` key; BFF profiles have none.
        client_cert: client_cert::ClientCertRule::default(),
        auth,
        rate_limits: rate_limits.into_boxed_slice(),
        scope: Arc::from(scope),
        ip_list,
        cors,
    }
}

/// The IP list of a route or BFF endpoint, on the real client address (`X-Forwarded-For`
/// counts only through `trusted_proxies`): 403 when it does not pass.
pub fn check_ip_list(
    list: &ip_list::IpList,
    trusted_proxies: &[Cidr],
    conn: &ConnInfo,
    headers: &http::HeaderMap,
) -> Result<(), GatewayError> {
    let client = rate_limit::client_ip(trusted_proxies, conn.peer.ip(), headers);
    if list.admits(client) {
        Ok(())
    } else {
        Err(GatewayError::IpDenied {
            list: list.name.clone(),
        })
    }
}

/// Runs the guards in their fixed order (client certificate, auth, then rate limits) against a
/// request head.
/// `parts` is edited: spoofed identity headers are removed on every route, verified claims are
/// forwarded, the token is stripped when the provider says so.
pub async fn run_guards(
    env: GuardEnv<'_>,
    guards: &Guards,
    conn: &ConnInfo,
    parts: &mut Parts,
) -> Result<Identity, GatewayError> {
    client_cert::check(env.forward_client_cert, guards.client_cert, conn, parts)?;
    for name in env.forwarded_claims {
        parts.headers.remove(name);
    }
    let (claims, consumer) = match &guards.auth {
        Some(rule) => {
            let v = rule.authenticate(parts).await?;
            (v.claims, v.consumer)
        }
        None => (None, None),
    };
    let mut shown: Option<RateLimitHeaders> = None;
    if !guards.rate_limits.is_empty() {
        let needs_ip = guards.rate_limits.iter().any(|p| p.needs_ip());
        let client_ip = if needs_ip {
            rate_limit::client_ip(env.trusted_proxies, conn.peer.ip(), &parts.headers)
        } else {
            conn.peer.ip()
        };
        let input = KeyInput {
            scope: &guards.scope,
            client_ip,
            headers: &parts.headers,
            claims: claims.as_ref(),
            consumer: consumer.as_deref(),
        };
        for policy in guards.rate_limits.iter() {
            let fields = match policy.cluster() {
                None => policy.check(&input)?,
                Some(scope) => policy.check_cluster(scope, &input).await?,
            };
            if let Some(fields) = fields {
                shown = Some(fields);
            }
        }
    }
    Ok(Identity {
        claims,
        consumer,
        rate_limit: shown,
    })
}
