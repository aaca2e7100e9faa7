//! `discovery = {...}` on an upstream and the `[discovery]` table -> [`DiscoverySettings`]:
//! one source per upstream, a DNS name with a port, an SRV name, an etcd prefix ending in `/`
//! with `[discovery.etcd] endpoints` present. Nothing is contacted here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use toml::Spanned;

use super::DiscoverySettings;
use super::dns::DnsSettings;
use super::etcd::EtcdSettings;
use crate::config::Diagnostics;
use crate::config::file::discovery::{DiscoveryFile, UpstreamDiscoveryFile};

/// The `[discovery]` table, compiled.
#[derive(Debug, Default, Clone)]
pub struct Globals {
    /// `resolvers`: name servers for `dns`/`srv` (empty: resolv.conf).
    pub resolvers: Vec<SocketAddr>,
    /// `registry_file`, resolved against the config's folder.
    pub registry_file: Option<PathBuf>,
    /// `[discovery.etcd] endpoints` (`None` without the table).
    pub etcd: Option<Vec<Uri>>,
}

/// Compiles `[discovery]`.
pub fn globals(d: &mut Diagnostics, f: Option<&Spanned<DiscoveryFile>>) -> Globals {
    let Some(f) = f.map(Spanned::get_ref) else {
        return Globals::default();
    };
    let resolvers = f.resolvers.as_ref().map_or_else(Vec::new, |list| {
        list.get_ref()
            .iter()
            .filter_map(|r| d.addr(r, "discovery.resolvers"))
            .collect()
    });
    let registry_file = f
        .registry_file
        .as_ref()
        .map(|p| crate::config::resolve(&d.source.path, p.get_ref()));
    let etcd = f.etcd.as_ref().map(|e| {
        let list = &e.get_ref().endpoints;
        if list.get_ref().is_empty() {
            d.error(
                list.span(),
                "discovery.etcd.endpoints",
                "lists no etcd client URL (e.g. \"http://127.0.0.1:2379\")",
            );
        }
        list.get_ref()
            .iter()
            .filter_map(|u| d.parse(u, "discovery.etcd.endpoints", etcd_url))
            .collect()
    });
    Globals {
        resolvers,
        registry_file,
        etcd,
    }
}

fn etcd_url(s: &str) -> Result<Uri, String> {
    let u: Uri = s
        .parse()
        .map_err(|_| format!("{s:?} is not a URL like \"http://127.0.0.1:2379\""))?;
    if u.scheme_str() != Some("http") || u.authority().is_none() {
        return Err(format!(
            "{s:?}: an etcd endpoint is an http:// URL with a host and port"
        ));
    }
    Ok(u)
}

/// Compiles an upstream's `discovery` table (`key` is `upstreams.NAME`).
pub fn compile(
    d: &mut Diagnostics,
    f: &Spanned<UpstreamDiscoveryFile>,
    key: &str,
    g: &Globals,
) -> Option<DiscoverySettings> {
    let k = format!("{key}.discovery");
    let t = f.get_ref();
    let registry = t.registry.as_ref().is_some_and(|r| *r.get_ref());
    let named = [&t.dns, &t.srv, &t.etcd]
        .iter()
        .filter(|v| v.is_some())
        .count()
        + usize::from(registry);
    if named != 1 {
        d.error(
            f.span(),
            k,
            "needs exactly one source: registry = true, dns, srv or etcd",
        );
        return None;
    }
    let ttl_key = |name: &str| format!("{k}.{name}");
    if t.dns.is_none() && t.srv.is_none() {
        if let Some(v) = t.min_ttl.as_ref().or(t.max_ttl.as_ref()) {
            d.error(v.span(), k, "min_ttl and max_ttl apply to dns and srv only");
            return None;
        }
    }
    if registry {
        return Some(DiscoverySettings::Registry {
            file: g.registry_file.clone(),
        });
    }
    if let Some(prefix) = &t.etcd {
        let p = prefix.get_ref();
        if !p.starts_with('/') || !p.ends_with('/') {
            d.error(
                prefix.span(),
                ttl_key("etcd"),
                format!("{p:?}: an etcd prefix starts and ends with `/`"),
            );
            return None;
        }
        let Some(endpoints) = g.etcd.clone() else {
            d.error(
                prefix.span(),
                ttl_key("etcd"),
                "needs [discovery.etcd] endpoints = [\"http://HOST:PORT\"]",
            );
            return None;
        };
        return Some(DiscoverySettings::Etcd(EtcdSettings {
            prefix: p.clone(),
            endpoints,
        }));
    }
    let min_ttl = d.duration_or(&t.min_ttl, &ttl_key("min_ttl"), Duration::from_secs(1));
    let max_ttl = d.duration_or(&t.max_ttl, &ttl_key("max_ttl"), Duration::from_secs(60));
    if min_ttl.is_zero() || min_ttl > max_ttl {
        let span = t.min_ttl.as_ref().map_or(f.span(), Spanned::span);
        d.error(
            span,
            ttl_key("min_ttl"),
            "must be more than 0 and at most max_ttl",
        );
        return None;
    }
    let (srv, text) = match (&t.dns, &t.srv) {
        (Some(v), _) => (false, v),
        (_, Some(v)) => (true, v),
        _ => return None,
    };
    let name = text.get_ref();
    let (scheme, host, port) = if srv {
        if !name.starts_with('_') || name.split('.').filter(|l| !l.is_empty()).count() < 3 {
            d.error(
                text.span(),
                ttl_key("srv"),
                format!("{name:?} is not an SRV name (_service._proto.name)"),
            );
            return None;
        }
        (http::uri::Scheme::HTTP, name.clone(), 0)
    } else {
        match crate::upstream::parse_endpoint(name) {
            Ok((scheme, a)) if a.port_u16().is_some() => {
                (scheme, a.host().to_owned(), a.port_u16().unwrap_or(0))
            }
            _ => {
                d.error(
                    text.span(),
                    ttl_key("dns"),
                    format!("{name:?} needs a host and a port (host:port)"),
                );
                return None;
            }
        }
    };
    Some(DiscoverySettings::Dns(DnsSettings {
        srv,
        name: host,
        scheme,
        port,
        min_ttl,
        max_ttl,
        resolvers: g.resolvers.clone(),
    }))
}
