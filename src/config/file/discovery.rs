//! `discovery = {...}` on an upstream and the process-wide `[discovery]` table (file shapes).

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `[upstreams.NAME] discovery = { ... }`: where the upstream's changing endpoints come from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDiscoveryFile {
    /// `true`: instances register through the admin listener (`PUT /registry/NAME/ID`).
    pub registry: Option<Spanned<bool>>,
    /// `host:port` re-resolved (A/AAAA) on the record TTL.
    pub dns: Option<Text>,
    /// SRV name (`_http._tcp.host`): ports and weights from the records.
    pub srv: Option<Text>,
    /// etcd key prefix (ending in `/`) whose keys hold instance records.
    pub etcd: Option<Text>,
    /// Shortest re-resolve interval for `dns`/`srv`; default `1s`.
    pub min_ttl: Option<Text>,
    /// Longest re-resolve interval for `dns`/`srv`; default `60s`.
    pub max_ttl: Option<Text>,
}

/// `[discovery]`: settings shared by every upstream's source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryFile {
    /// DNS servers (`ip:port`); default: the system's resolv.conf.
    pub resolvers: Option<Spanned<Vec<Text>>>,
    /// Where registrations are kept across restarts (written atomically).
    pub registry_file: Option<Text>,
    /// `[discovery.etcd]`.
    pub etcd: Option<Spanned<EtcdFile>>,
}

/// `[discovery.etcd]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdFile {
    /// etcd client URLs (`http://127.0.0.1:2379`).
    pub endpoints: Spanned<Vec<Text>>,
}
