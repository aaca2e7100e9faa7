//! The handler's entry into a route's traffic actions: an injected fault first, then the split
//! side (mirroring happens at forwarding time, see [`super::mirror`]). A route with none of them
//! costs two `Option` checks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::split::Caller;
use super::{ProxyAction, Route};
use crate::error::GatewayError;
use crate::filter::Claims;
use crate::net::Cidr;
use crate::upstream::Upstream;

/// What traffic actions read of the client.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The peer address.
    pub peer: IpAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Proxies whose X-Forwarded-For names the client (`sticky = "ip"`).
    pub trusted_proxies: &'a [Cidr],
    /// Verified claims, if the route authenticated the request.
    pub claims: Option<&'a Claims>,
}

/// Where a request goes and within what time.
#[derive(Debug)]
pub struct Dispatch<'r> {
    /// The upstream (the split side, or the route's upstream).
    pub upstream: &'r Arc<Upstream>,
    /// Time left for the upstream's response head (the route timeout less an injected delay).
    pub timeout: Duration,
    /// `Set-Cookie` that keeps a new client on its split side.
    pub set_cookie: Option<HeaderValue>,
}

/// Applies the route's fault (which may end the request) and picks its upstream. `fault` gets
/// the access-log label of an injected fault.
pub async fn dispatch<'r>(
    route: &'r Route,
    action: &'r ProxyAction,
    client: Client<'_>,
    headers: &mut HeaderMap,
    fault: &mut Option<&'static str>,
) -> Result<Dispatch<'r>, GatewayError> {
    let mut timeout = action.timeout;
    if let Some(f) = &route.fault {
        let injection = f.decide(headers);
        *fault = injection.label();
        if fault.is_some() {
            timeout = f.inject(injection, timeout, &action.upstream.name).await?;
        }
    }
    let Some(split) = &route.split else {
        return Ok(Dispatch {
            upstream: &action.upstream,
            timeout,
            set_cookie: None,
        });
    };
    let ip = if split.needs_ip() {
        crate::filter::rate_limit::client_ip(client.trusted_proxies, client.peer, headers)
    } else {
        client.peer
    };
    let choice = split.choose(&Caller {
        headers,
        claims: client.claims,
        ip,
        tls: client.tls,
    });
    Ok(Dispatch {
        upstream: choice.upstream,
        timeout,
        set_cookie: choice.set_cookie,
    })
}
