//! `discovery = { dns = "host:port" }` (A and AAAA records, the port from the config) and
//! `{ srv = "_http._tcp.name" }` (targets, ports and weights from SRV records, lowest priority
//! only), re-resolved when the answer's TTL passes, clamped to `min_ttl..=max_ttl`. A failed
//! lookup keeps the last good set and tries again after `min_ttl`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Weak;
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use http::uri::{Authority, Scheme};

use super::{Feed, Source, Wanted};

/// A compiled `dns` or `srv` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// `true` for `srv`.
    pub srv: bool,
    /// The name to look up.
    pub name: String,
    /// `http` or `https` (`dns = "https://host:port"`).
    pub scheme: Scheme,
    /// The port of `dns` endpoints (unused for SRV).
    pub port: u16,
    /// Shortest wait between lookups.
    pub min_ttl: Duration,
    /// Longest wait between lookups (and the longest a cached answer is trusted).
    pub max_ttl: Duration,
    /// Name servers; empty: the system's resolv.conf.
    pub resolvers: Vec<SocketAddr>,
}

/// Looks up, publishes, sleeps; ends when the feed is dropped.
pub async fn run(feed: Weak<Feed>, s: DnsSettings) {
    let resolver = match resolver(&s) {
        Ok(r) => r,
        Err(e) => {
            if let Some(f) = feed.upgrade() {
                f.failed(&format!("no resolver: {e}"));
            }
            return;
        }
    };
    loop {
        let answer = lookup(&resolver, &s).await;
        let wait = {
            let Some(f) = feed.upgrade() else { return };
            match answer {
                Ok((set, valid_until)) => {
                    f.replace(set);
                    valid_until.saturating_duration_since(Instant::now())
                }
                Err(e) => {
                    f.failed(&e);
                    s.min_ttl
                }
            }
        };
        tokio::time::sleep(wait.clamp(s.min_ttl, s.max_ttl)).await;
    }
}

fn resolver(s: &DnsSettings) -> Result<TokioResolver, ResolveError> {
    let provider = TokioConnectionProvider::default();
    let mut builder = if s.resolvers.is_empty() {
        TokioResolver::builder(provider)?
    } else {
        let servers: Vec<NameServerConfig> = s
            .resolvers
            .iter()
            .flat_map(|a| {
                [
                    NameServerConfig::new(*a, Protocol::Udp),
                    NameServerConfig::new(*a, Protocol::Tcp),
                ]
            })
            .collect();
        let config =
            ResolverConfig::from_parts(None, Vec::new(), NameServerConfigGroup::from(servers));
        TokioResolver::builder_with_config(config, provider)
    };
    let opts = builder.options_mut();
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.positive_max_ttl = Some(s.max_ttl);
    opts.negative_max_ttl = Some(s.min_ttl);
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    Ok(builder.build())
}

/// One lookup: the endpoints and when the answer expires.
async fn lookup(r: &TokioResolver, s: &DnsSettings) -> Result<(Vec<Wanted>, Instant), String> {
    if !s.srv {
        let ips = r
            .lookup_ip(s.name.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let set = endpoints(&s.scheme, ips.iter(), s.port, 1, Source::Dns);
        if set.is_empty() {
            return Err(format!("no A/AAAA records for {}", s.name));
        }
        return Ok((set, ips.valid_until()));
    }
    let srv = r
        .srv_lookup(s.name.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let mut until = srv.as_lookup().valid_until();
    let Some(priority) = srv.iter().map(|r| r.priority()).min() else {
        return Err(format!("no SRV records for {}", s.name));
    };
    let mut set = Vec::new();
    for rec in srv.iter().filter(|r| r.priority() == priority) {
        let target = rec.target().to_ascii();
        let ips = match target.trim_end_matches('.').parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                let found = r
                    .lookup_ip(rec.target().clone())
                    .await
                    .map_err(|e| format!("SRV target {target}: {e}"))?;
                until = until.min(found.valid_until());
                found.iter().collect()
            }
        };
        // RFC 2782: weight 0 means "rarely"; here it is the smallest share.
        let weight = u32::from(rec.weight()).max(1);
        set.extend(endpoints(
            &s.scheme,
            ips.into_iter(),
            rec.port(),
            weight,
            Source::Srv,
        ));
    }
    if set.is_empty() {
        return Err(format!("no addresses behind the SRV records of {}", s.name));
    }
    Ok((set, until))
}

fn endpoints(
    scheme: &Scheme,
    ips: impl Iterator<Item = IpAddr>,
    port: u16,
    weight: u32,
    source: Source,
) -> Vec<Wanted> {
    ips.filter_map(|ip| {
        let authority: Authority = SocketAddr::new(ip, port).to_string().parse().ok()?;
        Some(Wanted {
            scheme: scheme.clone(),
            authority,
            weight,
            source,
        })
    })
    .collect()
}
