//! Request filters ("guards"), run in a fixed order before a route's action:
//! authentication (JWT) → rate limits. Routes and BFF endpoints share them.

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
pub struct Guards {}

/// What the guards learned about the caller.
#[derive(Debug, Default, Clone)]
pub struct Identity {
    /// Claims of a verified token, when the route asks for authentication.
    pub claims: Option<Claims>,
}

/// Runs the guards in their fixed order (auth, then rate limits) against a request head.
/// `parts` may be edited (e.g. removing spoofed identity headers).
pub fn run_guards(
    _rt: &Runtime,
    _guards: &Guards,
    _conn: &ConnInfo,
    _parts: &mut Parts,
) -> Result<Identity, GatewayError> {
    Ok(Identity::default())
}
