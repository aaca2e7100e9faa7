//! The `Host` an attempt names its endpoint by, and the `-shadow` form mirror copies send.

use http::HeaderValue;
use http::uri::{Authority, Scheme};

/// Marks a mirror copy: the endpoint's Host is sent with the `-shadow` suffix.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shadow;

/// The shadow Host: `-shadow` appended to the host part (`users.internal:8080` →
/// `users.internal-shadow:8080`, `[::1]:8080` → `[::1]-shadow:8080`).
pub fn shadow_host(host: &HeaderValue) -> HeaderValue {
    let text = host.to_str().unwrap_or("");
    let split = match text.rfind(':') {
        Some(i) if !text[i..].contains(']') => i,
        _ => text.len(),
    };
    let out = format!("{}-shadow{}", &text[..split], &text[split..]);
    HeaderValue::from_str(&out).unwrap_or_else(|_| host.clone())
}

/// `Host` for an endpoint: `host`, or `host:port` unless the port is the scheme's default (the
/// form HTTP clients send, RFC 9110 §7.2).
pub(super) fn host_header(scheme: &Scheme, authority: &Authority) -> HeaderValue {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let text = match authority.port_u16() {
        Some(port) if port != default_port => authority.as_str(),
        _ => authority.host(),
    };
    HeaderValue::from_str(text).expect("a parsed authority is a valid header value")
}
