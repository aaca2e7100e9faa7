//! Config warnings: settings that load but are likely mistakes (a route that never matches, a
//! `*` taken literally, a secret that is not set, an open admin API, a certificate about to
//! expire). Printed by `portico check` and logged at every load; `check --strict` fails on them.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::file::GatewayFile;
use crate::config::{ConfigError, Diagnostics, SourceFile};
use crate::route::RouteTable;

/// A certificate closer than this to its end of validity is warned about.
pub const CERT_WARN_DAYS: i64 = 14;

/// What the warnings are computed from: the parsed file and the parts compiled from it.
pub struct Inputs<'a> {
    /// The parsed gateway.toml.
    pub file: &'a GatewayFile,
    /// Its text, for positions.
    pub source: &'a SourceFile,
    /// The compiled routes, in file order.
    pub routes: &'a RouteTable,
    /// The admin listener and whether it has a token.
    pub admin: (Option<SocketAddr>, bool),
    /// The served certificates.
    pub tls: Option<&'a crate::tls::TlsSettings>,
}

/// Every warning of a config that compiled, in file order.
pub fn collect(inputs: &Inputs<'_>) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let mut d = Diagnostics {
        source: inputs.source,
        errors: &mut out,
    };
    let file = inputs.file;
    shadowed_routes(&mut d, file, inputs.routes);
    for (i, r) in file.routes.iter().enumerate() {
        if let Some(p) = &r.matcher.get_ref().path_prefix {
            if p.get_ref().contains('*') {
                d.error(
                    p.span(),
                    format!("routes[{i}].match.path_prefix"),
                    format!(
                        "`*` is taken literally here; a prefix already takes everything under it (write \"{}\")",
                        literal_star_fix(p.get_ref())
                    ),
                );
            }
        }
    }
    for (name, p) in &file.auth.providers {
        if let Some(env) = &p.secret_env {
            if !crate::filter::auth::secret_env_is_set(env.get_ref()) {
                d.error(
                    env.span(),
                    format!("auth.providers.{}.secret_env", name.get_ref()),
                    format!(
                        "environment variable {} is not set; every token for this provider is refused",
                        env.get_ref()
                    ),
                );
            }
        }
    }
    if let (Some(addr), false) = inputs.admin {
        if !addr.ip().is_loopback() {
            let span = file
                .server
                .admin_listen
                .as_ref()
                .map_or(0..0, toml::Spanned::span);
            d.error(
                span,
                "server.admin_listen",
                format!(
                    "the admin API listens on {addr}, beyond this host, without a token; set admin_token_env"
                ),
            );
        }
    }
    if let (Some(tls), Some(tls_file)) = (inputs.tls, &file.server.tls) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for (i, c) in tls_file.get_ref().certificates.get_ref().iter().enumerate() {
            let path = crate::config::resolve(&inputs.source.path, c.get_ref().cert.get_ref());
            let Some(summary) = tls.certificates.iter().find(|s| s.file == path) else {
                continue;
            };
            let days = (summary.meta.not_after - now).div_euclid(86_400);
            if days < CERT_WARN_DAYS {
                d.error(
                    c.get_ref().cert.span(),
                    format!("server.tls.certificates[{i}].cert"),
                    format!(
                        "certificate \"{}\" expires in {days} days",
                        summary.meta.subject
                    ),
                );
            }
        }
    }
    out.sort_by_key(|w| (w.line, w.col));
    out
}

/// `/api/*` → `/api`, `/*` → `/`.
fn literal_star_fix(prefix: &str) -> String {
    let cut = prefix.split('*').next().unwrap_or("").trim_end_matches('/');
    if cut.is_empty() {
        "/".into()
    } else {
        cut.into()
    }
}

fn shadowed_routes(d: &mut Diagnostics<'_>, file: &GatewayFile, table: &RouteTable) {
    for (later, earlier) in crate::route::shadow::shadowed(table.routes()) {
        let (Some(l), Some(e)) = (file.routes.get(later), file.routes.get(earlier)) else {
            continue;
        };
        let (line, _) = d.source.line_col(e.id.span().start);
        d.error(
            l.id.span(),
            format!("routes[{later}]"),
            format!(
                "route `{}` never matches: route `{}` (line {line}) takes every request it would",
                l.id.get_ref(),
                e.id.get_ref()
            ),
        );
    }
}
