//! `discovery = {...}` -> [`DiscoverySettings`]: one source per upstream; the registry works,
//! the other sources are reported as not available in this build (never silently ignored).

use crate::config::Diagnostics;
use crate::config::file::discovery::UpstreamDiscoveryFile;

use super::DiscoverySettings;

/// Compiles an upstream's `discovery` table (`key` is `upstreams.NAME`).
pub fn compile(
    d: &mut Diagnostics,
    f: &toml::Spanned<UpstreamDiscoveryFile>,
    key: &str,
) -> Option<DiscoverySettings> {
    let k = format!("{key}.discovery");
    let t = f.get_ref();
    let registry = t.registry.as_ref().is_some_and(|r| *r.get_ref());
    let others = [
        ("dns", t.dns.as_ref()),
        ("srv", t.srv.as_ref()),
        ("etcd", t.etcd.as_ref()),
    ];
    let named = others.iter().filter(|(_, v)| v.is_some()).count() + usize::from(registry);
    if named != 1 {
        d.error(
            f.span(),
            k,
            "needs exactly one source: registry = true, dns, srv or etcd",
        );
        return None;
    }
    for (name, v) in others {
        let Some(v) = v else { continue };
        let text = v.get_ref();
        let problem = match name {
            "dns" if crate::upstream::parse_endpoint(text).is_err() => {
                format!("{text:?} needs a host and a port (host:port)")
            }
            "srv" if !text.starts_with('_') => {
                format!("{text:?} is not an SRV name (_service._proto.name)")
            }
            "etcd" if !text.starts_with('/') || !text.ends_with('/') => {
                format!("{text:?}: an etcd prefix starts and ends with `/`")
            }
            _ => format!(
                "the {name} source is not available in this build yet (see docs/discovery.md); use registry = true"
            ),
        };
        d.error(v.span(), format!("{k}.{name}"), problem);
        return None;
    }
    Some(DiscoverySettings::Registry)
}
