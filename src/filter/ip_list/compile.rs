//! `[ip_lists.NAME]` -> `IpList`, and the `ip_list = "NAME"` references of routes, BFF
//! profiles and endpoints, and `[server] admin_ip_list`.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use super::{IpList, Mode};
use crate::config::Diagnostics;
use crate::config::file::edge::IpListFile;
use crate::net::Cidr;

/// Compiled lists by name.
pub type IpLists = BTreeMap<Arc<str>, Arc<IpList>>;

/// Compiles every `[ip_lists.NAME]`; a list with errors is left out (and reported).
pub fn compile_lists(
    d: &mut Diagnostics,
    files: &BTreeMap<Spanned<String>, IpListFile>,
) -> IpLists {
    let mut out = IpLists::new();
    for (name, f) in files {
        let key = format!("ip_lists.{}", name.get_ref());
        let (mode, nets) = match (&f.allow, &f.deny) {
            (Some(a), None) => (Mode::Allow, a),
            (None, Some(n)) => (Mode::Deny, n),
            (Some(_), Some(n)) => {
                d.error(n.span(), &key, "an IP list has `allow` or `deny`, not both");
                continue;
            }
            (None, None) => {
                d.error(
                    name.span(),
                    &key,
                    "an IP list needs `allow = [...]` or `deny = [...]`",
                );
                continue;
            }
        };
        let field = if mode == Mode::Allow { "allow" } else { "deny" };
        let before = d.errors.len();
        let cidrs: Vec<Cidr> = nets
            .get_ref()
            .iter()
            .enumerate()
            .filter_map(|(i, t)| d.parse(t, format!("{key}.{field}[{i}]"), parse_network))
            .collect();
        if d.errors.len() == before {
            let name: Arc<str> = Arc::from(name.get_ref().as_str());
            out.insert(name.clone(), Arc::new(IpList::new(name, mode, &cidrs)));
        }
    }
    out
}

/// A CIDR whose host bits are zero (`10.0.0.0/8`), or a single address.
fn parse_network(text: &str) -> Result<Cidr, String> {
    let cidr = Cidr::parse(text)?;
    let (start, _) = cidr.range();
    let given = match text.split_once('/') {
        Some((ip, _)) => ip.trim().parse().map(crate::net::ip_number).ok(),
        None => Some(start),
    };
    if given != Some(start) {
        return Err(format!(
            "\"{text}\" has host bits set past its prefix length (did you mean the network address?)"
        ));
    }
    Ok(cidr)
}

#[cfg(test)]
mod tests {
    use super::parse_network;

    #[test]
    fn host_bits_and_garbage_are_refused() {
        assert!(parse_network("10.0.0.0/8").is_ok());
        assert!(parse_network("10.0.0.1").is_ok());
        assert!(parse_network("2001:db8::/32").is_ok());
        assert!(parse_network("10.0.0.1/8").is_err());
        assert!(parse_network("10.0.0.0/40").is_err());
        assert!(parse_network("nope").is_err());
    }
}
