//! The request's authority: Host rules of RFC 9112 §3.2 and §3.2.2 and RFC 9113 §8.3.1, so that
//! routing, `X-Forwarded-Host`, redirects and the upstream's Host all use one checked value.

use std::borrow::Cow;

use http::header::{HOST, HeaderMap};
use http::{Uri, Version};

/// Where the request's authority comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// The one valid `Host` header (origin-form HTTP/1.1, HTTP/2 without `:authority`).
    Host,
    /// The request target's authority (absolute-form, HTTP/2 `:authority`): it wins over Host,
    /// which the caller replaces with it.
    Target,
    /// None (HTTP/1.0 without Host).
    Absent,
}

/// Why a request's Host was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// An HTTP/1.1 or HTTP/2 request with neither Host nor an authority in its target.
    Missing,
    /// More than one Host field line (even with equal values).
    Duplicate,
    /// A Host or target authority that is not `host[:port]` (userinfo, bad port, spaces, ...).
    Invalid,
    /// HTTP/2 `:authority` and `host` that name different hosts.
    Mismatch,
}

impl HostError {
    /// The client-facing explanation (a problem+json `detail`).
    pub fn detail(self) -> &'static str {
        match self {
            HostError::Missing => "The request has no Host header.",
            HostError::Duplicate => "The request has more than one Host header.",
            HostError::Invalid => "The Host header or request target authority is invalid.",
            HostError::Mismatch => "The :authority and Host of the request differ.",
        }
    }
}

/// Checks the request's Host header(s) and target authority, and says which one names the host.
pub fn check(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<Authority, HostError> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Duplicate);
    }
    if let Some(h) = host {
        if !valid(h.as_bytes()) {
            return Err(HostError::Invalid);
        }
    }
    if let Some(target) = uri.authority() {
        if !valid(target.as_str().as_bytes()) {
            return Err(HostError::Invalid);
        }
        // RFC 9113 §8.3.1: a server SHOULD treat a differing Host as malformed. For HTTP/1.1
        // absolute-form, RFC 9112 §3.2.2 says the Host header is ignored in favour of the target.
        if version == Version::HTTP_2
            && host.is_some_and(|h| {
                !h.as_bytes()
                    .eq_ignore_ascii_case(target.as_str().as_bytes())
            })
        {
            return Err(HostError::Mismatch);
        }
        return Ok(Authority::Target);
    }
    match (host, version) {
        (Some(_), _) => Ok(Authority::Host),
        (None, Version::HTTP_09 | Version::HTTP_10) => Ok(Authority::Absent),
        (None, _) => Err(HostError::Missing),
    }
}

/// The host the client asked for: lowercase, without port. The caller has already checked the
/// authority ([`check`]); this only cuts it, in one pass over its bytes from the end.
pub fn requested<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<Cow<'a, str>> {
    let raw = match uri.authority() {
        Some(a) => a.as_str(),
        None => headers.get(HOST)?.to_str().ok()?,
    };
    let bytes = raw.as_bytes();
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.find(']').map_or(v6, |end| &v6[..end]),
        None => bytes
            .iter()
            .rposition(|&b| b == b':')
            .map_or(raw, |colon| &raw[..colon]),
    };
    let end = host.bytes().rposition(|b| b != b'.').map_or(0, |i| i + 1);
    let host = &host[..end];
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// Whether `v` is `uri-host [":" port]` without userinfo (RFC 3986 §3.2.2): a registered name of
/// unreserved characters (no percent-escapes or sub-delimiters: no real host needs them), an
/// IPv4 address, or a bracketed IPv6 address; a port of 1 to 5 digits up to 65535.
pub fn valid(v: &[u8]) -> bool {
    if v.first() == Some(&b'[') {
        return valid_bracketed(v);
    }
    let (host, port) = match v.iter().rposition(|&b| b == b':') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    port.is_none_or(valid_port)
        && !host.is_empty()
        && host.len() <= 255
        && host.iter().all(|&b| NAME[b as usize])
}

/// Bytes of a registered name: RFC 3986's unreserved characters.
const NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    table
};

/// `[IPv6]` with an optional port.
fn valid_bracketed(v: &[u8]) -> bool {
    let Some(close) = v.iter().position(|&b| b == b']') else {
        return false;
    };
    let ok = std::str::from_utf8(&v[1..close])
        .ok()
        .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
        .is_some();
    ok && match &v[close + 1..] {
        [] => true,
        [b':', port @ ..] => valid_port(port),
        _ => false,
    }
}

/// 1 to 5 digits, at most 65535.
fn valid_port(p: &[u8]) -> bool {
    (1..=5).contains(&p.len())
        && p.iter()
            .try_fold(0u32, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
            })
            .is_some_and(|n| n <= 65535)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn requested_host_is_lowercase_without_port_or_trailing_dot() {
        let name = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(HOST, HeaderValue::from_str(host).unwrap());
            requested(&Uri::from_static("/"), &h).map(Cow::into_owned)
        };
        assert_eq!(name("Example.Test:8080").as_deref(), Some("example.test"));
        assert_eq!(name("a.test.").as_deref(), Some("a.test"));
        assert_eq!(name("127.0.0.1:18002").as_deref(), Some("127.0.0.1"));
        assert_eq!(name("[::1]:443").as_deref(), Some("::1"));
        assert_eq!(name("plain").as_deref(), Some("plain"));
        let target = Uri::from_static("http://Target.Test:81/x");
        assert_eq!(
            requested(&target, &HeaderMap::new()).as_deref(),
            Some("target.test")
        );
        assert_eq!(requested(&Uri::from_static("/"), &HeaderMap::new()), None);
    }

    #[test]
    fn valid_hosts() {
        for ok in [
            "a.test",
            "Example.Test:8080",
            "127.0.0.1",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:443",
            "[::ffff:10.0.0.1]:80",
            "a_b-c~d.test.",
            "x:65535",
        ] {
            assert!(valid(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "a b.test",
            "user@evil.test",
            "example.test:80abc",
            "example.test:",
            "example.test:65536",
            "example.test:000080",
            "a.test/x",
            "a.test, b.test",
            "[::1",
            "[::1]x",
            "[zz]:80",
            "a%2e.test",
            "a.test\t",
        ] {
            assert!(!valid(bad.as_bytes()), "{bad}");
        }
    }

    fn heads(hosts: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(HOST, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn rules_by_version_and_target() {
        let origin: Uri = "/x".parse().unwrap();
        let absolute: Uri = "http://a.test/x".parse().unwrap();
        let v11 = Version::HTTP_11;
        assert_eq!(check(v11, &origin, &heads(&["a"])), Ok(Authority::Host));
        assert_eq!(check(v11, &origin, &heads(&[])), Err(HostError::Missing));
        assert_eq!(
            check(Version::HTTP_10, &origin, &heads(&[])),
            Ok(Authority::Absent)
        );
        assert_eq!(
            check(v11, &origin, &heads(&["a", "a"])),
            Err(HostError::Duplicate)
        );
        assert_eq!(
            check(v11, &absolute, &heads(&["b.test"])),
            Ok(Authority::Target)
        );
        assert_eq!(
            check(v11, &absolute, &heads(&["b c"])),
            Err(HostError::Invalid)
        );
        let h2 = Version::HTTP_2;
        assert_eq!(check(h2, &absolute, &heads(&[])), Ok(Authority::Target));
        assert_eq!(
            check(h2, &absolute, &heads(&["A.test"])),
            Ok(Authority::Target)
        );
        assert_eq!(
            check(h2, &absolute, &heads(&["b.test"])),
            Err(HostError::Mismatch)
        );
        assert_eq!(check(h2, &origin, &heads(&[])), Err(HostError::Missing));
        let userinfo: Uri = "http://u@a.test/x".parse().unwrap();
        assert_eq!(
            check(v11, &userinfo, &heads(&["a.test"])),
            Err(HostError::Invalid)
        );
    }
}
