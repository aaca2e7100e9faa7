//! A route's protocol-upgrade allow-list (`upgrades = [...]`, default `["websocket"]`): only
//! listed protocols are tunnelled after a 101; `h2c` (and `h2`) never are (RFC 9113 §3.1).

use http::header::{self, HeaderMap};
use toml::Spanned;

use crate::config::diag::Diagnostics;
use crate::config::file::Text;

/// Protocol names (lowercase, without version) a route may switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrades(Box<[Box<str>]>);

impl Default for Upgrades {
    fn default() -> Self {
        Upgrades(Box::new(["websocket".into()]))
    }
}

/// Protocols no route may list: HTTP/2 is negotiated by ALPN or prior knowledge, never by
/// an HTTP/1.1 upgrade through the gateway (the tunnel would bypass routing and guards).
const NEVER: [&str; 2] = ["h2c", "h2"];

impl Upgrades {
    /// Whether every protocol the client offers in `Upgrade` is allowed (an empty offer is not).
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let mut offered = headers
            .get_all(header::UPGRADE)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or(",").split(','))
            .map(|p| protocol_name(p.trim()))
            .peekable();
        offered.peek().is_some() && offered.all(|p| self.has(p))
    }

    /// Whether the upstream's 101 switched to a protocol this route allows and the client
    /// offered.
    pub fn accepts_switch(&self, request: &HeaderMap, response: &HeaderMap) -> bool {
        let Some(chosen) = response
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .map(|v| protocol_name(v.trim()))
        else {
            return false;
        };
        self.has(chosen)
            && crate::filter::headers::list_items(request, header::UPGRADE)
                .any(|p| protocol_name(p).eq_ignore_ascii_case(chosen))
    }

    fn has(&self, name: &str) -> bool {
        !name.is_empty()
            && !NEVER.iter().any(|n| n.eq_ignore_ascii_case(name))
            && self.0.iter().any(|p| p.eq_ignore_ascii_case(name))
    }
}

/// `websocket` of `websocket/13`.
fn protocol_name(offer: &str) -> &str {
    offer.split('/').next().unwrap_or(offer).trim()
}

/// Compiles a route's `upgrades` (`None`: the default).
pub fn compile(d: &mut Diagnostics, value: Option<&Spanned<Vec<Text>>>, key: &str) -> Upgrades {
    let Some(list) = value else {
        return Upgrades::default();
    };
    let mut out = Vec::new();
    for (i, p) in list.get_ref().iter().enumerate() {
        let name = p.get_ref();
        let k = format!("{key}.upgrades[{i}]");
        if NEVER.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            d.error(
                p.span(),
                k,
                format!(
                    "\"{name}\" cannot be tunnelled: HTTP/2 upgrades are not supported (RFC 9113 §3.1); clients reach HTTP/2 by ALPN or prior knowledge"
                ),
            );
        } else if name.is_empty() || !name.bytes().all(is_tchar) {
            d.error(
                p.span(),
                k,
                format!(
                    "bad protocol \"{name}\": expected a token such as \"websocket\" (no version, no spaces)"
                ),
            );
        } else {
            out.push(name.to_ascii_lowercase().into_boxed_str());
        }
    }
    Upgrades(out.into_boxed_slice())
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn offer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn default_allows_websocket_only() {
        let u = Upgrades::default();
        assert!(u.allows(&offer("websocket")));
        assert!(u.allows(&offer("WebSocket/13")));
        assert!(!u.allows(&offer("h2c")));
        assert!(!u.allows(&offer("websocket, h2c")));
        assert!(!u.allows(&HeaderMap::new()));
        let none = Upgrades(Box::new([]));
        assert!(!none.allows(&offer("websocket")));
        // Even a list holding h2c (impossible through the config) never allows it.
        let forged = Upgrades(Box::new(["h2c".into()]));
        assert!(!forged.allows(&offer("h2c")));
    }

    #[test]
    fn switch_must_be_offered_and_allowed() {
        let u = Upgrades::default();
        assert!(u.accepts_switch(&offer("websocket"), &offer("websocket")));
        assert!(!u.accepts_switch(&offer("websocket"), &offer("h2c")));
        assert!(!u.accepts_switch(&offer("websocket"), &HeaderMap::new()));
    }
}
