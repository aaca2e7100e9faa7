//! Client-certificate guard: a route may require a verified client certificate, and the
//! verified certificate is forwarded upstream in one header whose client-sent copies are
//! always removed.

use http::request::Parts;
use toml::Spanned;

use crate::config::diag::Diagnostics;
use crate::config::file::{RouteFile, Text, TlsFile};
use crate::conn::ConnInfo;
use crate::error::GatewayError;

/// What a route asks of the client's certificate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertRule {
    /// Any request passes (a verified certificate, if any, is still forwarded).
    #[default]
    Optional,
    /// Only requests on a TLS connection with a verified client certificate pass; others
    /// get 403.
    Required,
}

/// Compiles a route's `client_cert = "required" | "optional"`.
pub fn rule(d: &mut Diagnostics, value: &Option<Text>, route_key: &str) -> ClientCertRule {
    let Some(v) = value else {
        return ClientCertRule::Optional;
    };
    match v.get_ref().as_str() {
        "required" => ClientCertRule::Required,
        "optional" => ClientCertRule::Optional,
        other => {
            d.error(
                v.span(),
                format!("{route_key}.client_cert"),
                format!("unknown value \"{other}\" (use \"required\" or \"optional\")"),
            );
            ClientCertRule::Optional
        }
    }
}

/// A route that requires a client certificate needs `server.tls.client_ca`: otherwise no
/// request could ever pass it.
pub fn check_routes(d: &mut Diagnostics, routes: &[RouteFile], tls: Option<&Spanned<TlsFile>>) {
    let has_ca = tls.is_some_and(|t| t.get_ref().client_ca.is_some());
    for (i, r) in routes.iter().enumerate() {
        if let Some(v) = &r.client_cert {
            if v.get_ref() == "required" && !has_ca {
                d.error(
                    v.span(),
                    format!("routes[{i}].client_cert"),
                    "needs `server.tls.client_ca`: without it no client certificate is verified",
                );
            }
        }
    }
}

/// The guard step: removes client-sent copies of the forwarding header, refuses a request
/// without a verified certificate when the route requires one, and forwards the certificate.
pub fn check(
    header: Option<&http::HeaderName>,
    rule: ClientCertRule,
    conn: &ConnInfo,
    parts: &mut Parts,
) -> Result<(), GatewayError> {
    if let Some(h) = header {
        parts.headers.remove(h);
    }
    match (&conn.client_cert, rule) {
        (None, ClientCertRule::Required) => Err(GatewayError::ClientCertRequired),
        (None, ClientCertRule::Optional) => Ok(()),
        (Some(cert), _) => {
            if let Some(h) = header {
                parts.headers.insert(h.clone(), cert.forward.clone());
            }
            Ok(())
        }
    }
}
