//! Header phase: hop-by-hop stripping, forwarding headers, request ids, per-route header edits.

pub mod compile;
pub mod slab;
pub mod underscore;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::conn::ConnInfo;
use crate::net::Cidr;

use crate::net::added::{Added, HTTP, HTTPS, is_forwarding_name};
pub use crate::net::added::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID};
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Compiled add/set/remove edits for one direction of one route.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderOps {
    /// Removed first.
    pub remove: Vec<HeaderName>,
    /// Then replaced.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Then appended.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    /// True when there is nothing to do (the common case skips the call entirely).
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// Applies the edits in the order remove, set, add.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Removes hop-by-hop headers: `Connection` and every header it names, plus the fixed list of
/// RFC 9110 §7.6.1. `Upgrade` (and `Connection: upgrade`) survive when `upgrading`; `TE: trailers`
/// survives because gRPC needs it end to end. `Connection` cannot name `Host` or
/// `Content-Length` (fields meant for every recipient, RFC 9110 §7.6.1), and the request path
/// runs this before any gateway-set header is added, so none of those can be named away.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    // Most heads carry none of these: one pass over the (few) names is cheaper than a dozen
    // hashed removals of absent keys, on every request and every response.
    if !upgrading && !headers.keys().any(is_hop_by_hop_candidate) {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION) {
        if conn.as_bytes().contains(&b',') || !is_keep_alive_or_close(conn.as_bytes()) {
            let named: Vec<HeaderName> = headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
                .filter(|n| !(upgrading && n == header::UPGRADE))
                .filter(|n| n != header::HOST && n != header::CONTENT_LENGTH)
                .collect();
            for name in named {
                headers.remove(&name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::PROXY_AUTHENTICATE);
    headers.remove(header::PROXY_AUTHORIZATION);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    if let Some(te) = headers.get(header::TE) {
        if !te.as_bytes().eq_ignore_ascii_case(b"trailers") {
            headers.remove(header::TE);
        }
    }
    if upgrading {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Whether `name` is one that `strip_hop_by_hop` removes or inspects (besides names listed in
/// `Connection`, which only matter when `Connection` itself is present).
fn is_hop_by_hop_candidate(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::UPGRADE
}

fn is_keep_alive_or_close(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
}

/// Whether the client asked to switch protocols (`Connection: upgrade` + `Upgrade`).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && list_items(headers, header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// The items of a comma-separated list field across all its lines (RFC 9110 §5.6.1), trimmed,
/// empty ones skipped; a line that is not text holds none.
pub fn list_items(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether `peer` is one of `server.trusted_proxies`.
pub fn is_trusted(trusted: &[Cidr], peer: IpAddr) -> bool {
    !trusted.is_empty() && trusted.iter().any(|c| c.contains(peer))
}

/// Sets the forwarding headers for a request that came on `conn`: the client's own values
/// in `headers` are kept only when the peer is one of `trusted_proxies`. Shared by the proxy
/// path and BFF part calls, so both tell upstreams the same story.
pub fn forward(
    headers: &mut HeaderMap,
    conn: &ConnInfo,
    trusted_proxies: &[Cidr],
    host: Option<HeaderValue>,
) {
    let trusted = is_trusted(trusted_proxies, conn.peer.ip());
    set_forwarded(headers, &conn.forwarded_for, trusted, conn.scheme(), host);
}

/// The forwarding fields of a proxied request held beside its map ([`Added`]): what
/// [`forward`] writes in the map, plus the request id. From an untrusted peer the client's own
/// copies (and `forwarded`, and its `x-request-id`) leave the map — found by one scan of its
/// names, as clients rarely send any — and the gateway's values are held. A trusted proxy's
/// chain is extended in the map as `forward` does (its proto and host stand when present).
pub fn forward_beside<'a>(
    headers: &mut HeaderMap,
    conn: &'a ConnInfo,
    trusted_proxies: &[Cidr],
    host: Option<HeaderValue>,
    request_id: &'a HeaderValue,
) -> Added<'a> {
    if is_trusted(trusted_proxies, conn.peer.ip()) {
        set_forwarded(headers, &conn.forwarded_for, true, conn.scheme(), host);
        headers.remove(&X_REQUEST_ID);
        return Added {
            request_id: Some(request_id),
            ..Added::default()
        };
    }
    if headers.keys().any(is_forwarding_name) {
        for name in [
            &FORWARDED,
            &X_FORWARDED_FOR,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &X_REQUEST_ID,
        ] {
            headers.remove(name);
        }
    }
    Added {
        forwarded_for: Some(&conn.forwarded_for),
        forwarded_proto: Some(if conn.tls { &HTTPS } else { &HTTP }),
        forwarded_host: host,
        request_id: Some(request_id),
        replace_host: false,
    }
}

/// Sets X-Forwarded-For/-Proto/-Host; `peer` is the client's address as a header value
/// ([`ConnInfo::forwarded_for`]). A client's own values are kept (and appended to) only when
/// the peer is a trusted proxy; otherwise they are replaced, so clients cannot forge them.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    trusted: bool,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    if !trusted {
        // The common case: the client's own values are replaced.
        headers.remove(&FORWARDED);
        headers.insert(&X_FORWARDED_FOR, peer.clone());
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        match host {
            Some(h) => headers.insert(&X_FORWARDED_HOST, h),
            None => headers.remove(&X_FORWARDED_HOST),
        };
        return;
    }
    // A trusted proxy's chain is kept and extended; its proto and host stand when present.
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = match (prior.is_empty(), peer.to_str()) {
        (false, Ok(ip)) => {
            let joined = format!("{}, {ip}", prior.join(", "));
            HeaderValue::from_str(&joined).unwrap_or_else(|_| peer.clone())
        }
        _ => peer.clone(),
    };
    headers.insert(&X_FORWARDED_FOR, xff);
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(h) = host {
            headers.insert(&X_FORWARDED_HOST, h);
        }
    }
}

/// Keeps a client's `x-request-id` when it is 1–128 visible safe characters, else makes one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
        {
            return v.clone();
        }
    }
    new_request_id()
}

/// A fresh id: a per-process random prefix and a counter, unique and cheap to make.
pub fn new_request_id() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // `{prefix:016x}-`, the per-process part, written once.
    static PREFIX: std::sync::OnceLock<[u8; 17]> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        let mut text = [b'-'; 17];
        write_hex(&mut text[..16], h.finish());
        text
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // `{prefix}{n:012x}`, written without the formatting machinery (every request).
    let mut buf = [0u8; 29];
    buf[..17].copy_from_slice(prefix);
    write_hex(&mut buf[17..], n);
    slab::value(&buf).expect("hex is a valid header value")
}

/// Writes the low `out.len()` hex digits of `n`, zero-padded, lowercase.
fn write_hex(out: &mut [u8], mut n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_named_and_fixed_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn keeps_upgrade_when_upgrading_and_te_trailers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn forwarded_for_untrusted_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("10.0.0.1"),
            false,
            "http",
            None,
        );
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("10.0.0.1"),
            true,
            "http",
            None,
        );
        assert_eq!(h[&X_FORWARDED_FOR], "1.1.1.1, 10.0.0.1");
    }

    #[test]
    fn hop_by_hop_fast_path_keeps_end_to_end_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
        for name in [
            "proxy-authorization",
            "trailer",
            "transfer-encoding",
            "keep-alive",
        ] {
            let mut h = HeaderMap::new();
            h.insert("x-keep", HeaderValue::from_static("1"));
            h.insert(HeaderName::from_static(name), HeaderValue::from_static("v"));
            strip_hop_by_hop(&mut h, false);
            assert_eq!(h.len(), 1, "{name} must go: {h:?}");
        }
    }

    #[test]
    fn forwarded_untrusted_sets_all_three() {
        let mut h = HeaderMap::new();
        h.insert(&FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        h.insert(&X_FORWARDED_HOST, HeaderValue::from_static("evil"));
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("192.168.0.9"),
            false,
            "https",
            None,
        );
        assert_eq!(h[&X_FORWARDED_FOR], "192.168.0.9");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert!(!h.contains_key(&X_FORWARDED_HOST));
        assert!(!h.contains_key(&FORWARDED));
        let host = HeaderValue::from_static("api.example.com");
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("10.0.0.1"),
            false,
            "http",
            Some(host.clone()),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(h[&X_FORWARDED_HOST], "api.example.com");
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_static("bad id with spaces"),
        );
        assert_ne!(request_id(&h), "bad id with spaces");
        assert_ne!(new_request_id(), new_request_id());
        let id = new_request_id();
        let text = id.to_str().unwrap();
        assert_eq!(text.len(), 29);
        let (prefix, n) = text.split_once('-').unwrap();
        assert_eq!((prefix.len(), n.len()), (16, 12));
        let next = new_request_id();
        let next_n = u64::from_str_radix(next.to_str().unwrap().split_once('-').unwrap().1, 16);
        assert!(next_n.unwrap() > u64::from_str_radix(n, 16).unwrap());
    }
}
