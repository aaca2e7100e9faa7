//! Endpoint addresses as written in the config.

use http::uri::{Authority, Scheme};

/// Parses an endpoint: `host:port`, `http://host:port` or `https://host:port`.
pub fn parse_endpoint(text: &str) -> Result<(Scheme, Authority), String> {
    let bad = |why: &str| format!("bad address \"{text}\": {why}");
    let (scheme, rest) = match text.split_once("://") {
        Some(("http", rest)) => (Scheme::HTTP, rest),
        Some(("https", rest)) => (Scheme::HTTPS, rest),
        Some((other, _)) => {
            return Err(bad(&format!(
                "unsupported scheme \"{other}\" (use http or https)"
            )));
        }
        None => (Scheme::HTTP, text),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(bad("an endpoint is host:port, without a path"));
    }
    let authority: Authority = rest.parse().map_err(|_| bad("expected host:port"))?;
    if authority.port_u16().is_none() {
        return Err(bad("a port is required, e.g. \"127.0.0.1:7001\""));
    }
    if authority.host().is_empty() || rest.contains('@') {
        return Err(bad("expected host:port"));
    }
    Ok((scheme, authority))
}
