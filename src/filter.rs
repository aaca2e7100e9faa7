//! Request filters ("guards"), run in a fixed order before a route's action:
//! authentication (JWT) → rate limits. Routes and BFF endpoints share them.

pub mod client_cert;
pub mod headers;

use std::sync::Arc;

use http::request::Parts;

use crate::config::Runtime;
use crate::error::GatewayError;
use crate::server::ConnInfo;

/// Verified JWT claims (a JSON object), shared by later phases: rate-limit keys, claim
/// forwarding, BFF templates.
pub type Claims = Arc<serde_json::Map<String, serde_json::Value>>;

/// The filters a request must pass before the action of its route or BFF endpoint runs.
#[derive(Debug, Default)]
pub struct Guards {
    /// Whether a verified client certificate is required (checked first).
    pub client_cert: client_cert::ClientCertRule,
}

/// What the guards learned about the caller.
#[derive(Debug, Default, Clone)]
pub struct Identity {
    /// Claims of a verified token, when the route asks for authentication.
    pub claims: Option<Claims>,
}

/// Runs the guards in their fixed order (auth, then rate limits) against a request head.
/// `parts` may be edited (e.g. removing spoofed identity headers).
pub fn run_guards(
    rt: &Runtime,
    guards: &Guards,
    conn: &ConnInfo,
    parts: &mut Parts,
) -> Result<Identity, GatewayError> {
    client_cert::check(rt, guards.client_cert, conn, parts)?;
    Ok(Identity::default())
}
