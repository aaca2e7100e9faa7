//! Assembling the client's answer: one JSON object keyed by part name (flattened parts merged
//! at the top level), the `_partial` report, and the `portico-partial` and `Server-Timing`
//! headers.

use std::fmt::Write as _;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use serde_json::Value;

use super::call::{Failure, Origin, Reason};
use super::fanout::Run;
use super::metrics::Completion;
use super::{Endpoint, PARTIAL_HEADER, PARTIAL_KEY};
use crate::body::Body;
use crate::error::GatewayError;

static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// A part's answer as it goes into the client's: text shaped while parsing, or a tree.
enum Piece {
    Text(bytes::Bytes),
    Tree(Value),
}

/// Builds the 200 answer from what the parts produced; a required part whose answer lacks
/// the expected shape fails the request instead (502).
pub fn respond(
    ep: &Endpoint,
    run: Run,
    total: Duration,
) -> Result<(Response<Body>, Completion), GatewayError> {
    let Run {
        mut values,
        mut texts,
        mut failures,
        took,
        origins,
    } = run;
    let mut out = Vec::with_capacity(ep.size_hint);
    let mut keys: Vec<String> = Vec::new();
    out.push(b'{');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    for (i, part) in ep.parts.iter().enumerate() {
        // An answer shaped while parsing has its text ready (and `values` holds only what
        // templates read of it); a tree is shaped now. `None` inside: nothing of the
        // expected shape was left.
        let shaped = match (texts[i].take(), values[i].take()) {
            (Some(text), _) => Some(text.map(Piece::Text)),
            (None, Some(v)) if part.shape.is_identity() => Some(Some(Piece::Tree(v))),
            (None, Some(v)) => Some(part.shape.apply(v).map(Piece::Tree)),
            (None, None) => None,
        };
        let piece = match shaped {
            Some(None) => {
                if part.required {
                    return Err(unexpected_shape(part));
                }
                failures[i] = Some(Failure::new(Reason::UnexpectedShape));
                None
            }
            Some(piece) => piece,
            None => None,
        };
        let piece = piece.or_else(|| {
            part.default
                .clone()
                .or_else(|| part.fallback.clone())
                .map(Piece::Tree)
        });
        let value = match piece {
            None => continue,
            Some(piece) if !part.flatten => {
                sep(&mut out);
                out.extend_from_slice(part.key_json.as_bytes());
                match piece {
                    Piece::Text(text) => out.extend_from_slice(&text),
                    Piece::Tree(value) => {
                        let _ = serde_json::to_writer(&mut out, &value);
                    }
                }
                if ep.has_flatten {
                    keys.push(part.name.to_string());
                }
                continue;
            }
            // `flatten` parts are kept as trees (`Shape::tree_only`); a text would be read
            // back rather than dropped.
            Some(Piece::Text(text)) => serde_json::from_slice(&text).unwrap_or(Value::Null),
            Some(Piece::Tree(value)) => value,
        };
        let Value::Object(map) = value else {
            if part.required {
                return Err(unexpected_shape(part));
            }
            failures[i].get_or_insert(Failure::new(Reason::UnexpectedShape));
            continue;
        };
        for (k, v) in map {
            // On a clash the part listed first wins; `_partial` is reserved.
            if k == PARTIAL_KEY || keys.contains(&k) {
                continue;
            }
            sep(&mut out);
            let _ = serde_json::to_writer(&mut out, &k);
            out.push(b':');
            let _ = serde_json::to_writer(&mut out, &v);
            keys.push(k);
        }
    }
    let missing: Vec<(usize, &Failure)> = failures
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)))
        .collect();
    let mut partial_header = String::new();
    if !missing.is_empty() {
        sep(&mut out);
        out.extend_from_slice(b"\"_partial\":{");
        for (k, (i, f)) in missing.iter().enumerate() {
            let name = &ep.parts[*i].name;
            if k > 0 {
                out.push(b',');
                partial_header.push_str(", ");
            }
            // A served fallback is reported as such, with the failure as its cause.
            let fallback = ep.parts[*i].fallback.is_some();
            let shown = if fallback {
                "fallback"
            } else {
                f.reason.as_str()
            };
            out.extend_from_slice(ep.parts[*i].key_json.as_bytes());
            out.push(b'"');
            out.extend_from_slice(shown.as_bytes());
            out.push(b'"');
            partial_header.push_str(name);
            partial_header.push_str(";reason=");
            partial_header.push_str(shown);
            if fallback {
                partial_header.push_str(";cause=");
                partial_header.push_str(f.reason.as_str());
            }
            if let Some(s) = f.status {
                let _ = write!(partial_header, ";status={}", s.as_u16());
            }
        }
        out.push(b'}');
    }
    out.push(b'}');

    let etag = etag(&out);
    let mut resp = Response::new(Body::full(out));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // `private, no-store` unless the endpoint says otherwise: answers are per caller.
    h.insert(CACHE_CONTROL, ep.cache_control.clone());
    h.insert(ETAG, etag);
    if let Ok(v) = HeaderValue::try_from(server_timing(ep, &took, &failures, &origins, total)) {
        h.insert(&SERVER_TIMING, v);
    }
    let completion = if missing.is_empty() {
        Completion::Complete
    } else {
        if let Ok(v) = HeaderValue::try_from(partial_header) {
            h.insert(&PARTIAL_HEADER, v);
        }
        Completion::Partial
    };
    Ok((resp, completion))
}

/// A strong validator: the body's 128-bit XXH3 hash, base64url, quoted.
///
/// A strong ETag only has to change whenever the body does; it need not resist forgery (the
/// body is the client's own answer). XXH3 does that at a fraction of SHA-256's cost per byte,
/// and being unseeded, every gateway process gives the same body the same tag.
fn etag(body: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    let digest = xxhash_rust::xxh3::xxh3_128(body).to_be_bytes();
    // `"` + 22 base64url characters + `"`.
    let mut text = [b'"'; 24];
    let written = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode_slice(digest, &mut text[1..23])
        .expect("16 bytes are 22 base64url characters");
    debug_assert_eq!(written, 22);
    HeaderValue::from_bytes(&text).expect("base64url is a valid header value")
}

/// Whether `If-None-Match` names the answer's entity tag (weak comparison, RFC 9110 §13.1.2).
pub fn not_modified(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let tag = etag.as_bytes();
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t).as_bytes() == tag)
}

/// Turns a 200 answer into its 304: no body and no content fields; the validator, caching and
/// `Vary` fields stay.
pub fn into_not_modified(resp: Response<Body>) -> Response<Body> {
    let (mut head, _) = resp.into_parts();
    head.status = StatusCode::NOT_MODIFIED;
    head.headers.remove(CONTENT_TYPE);
    head.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(head, Body::Empty)
}

fn unexpected_shape(part: &super::Part) -> GatewayError {
    GatewayError::BffPartFailed {
        part: part.name.clone(),
        reason: Reason::UnexpectedShape.as_str(),
    }
}

/// `profile;dur=12.1, orders;dur=40.0;desc="timeout", total;dur=41.3` (milliseconds); a
/// cached answer says `desc="cache"`, a stale one served after a failure `desc="stale"`.
fn server_timing(
    ep: &Endpoint,
    took: &[Option<Duration>],
    failures: &[Option<Failure>],
    origins: &[Origin],
    total: Duration,
) -> String {
    let mut s = String::with_capacity(24 * (ep.parts.len() + 1));
    for (i, part) in ep.parts.iter().enumerate() {
        let Some(t) = took[i] else { continue };
        s.push_str(&part.name);
        push_dur(&mut s, t);
        let desc = match (&failures[i], origins[i]) {
            (Some(f), _) => Some(f.reason.as_str()),
            (None, Origin::Cache) => Some("cache"),
            (None, Origin::Stale) => Some("stale"),
            (None, Origin::Backend) => None,
        };
        if let Some(d) = desc {
            s.push_str(";desc=\"");
            s.push_str(d);
            s.push('"');
        }
        s.push_str(", ");
    }
    s.push_str("total");
    push_dur(&mut s, total);
    s
}

/// `;dur=12.3` in milliseconds, with integer arithmetic (float formatting is slow) in `u64`
/// (`as_micros` is a `u128`, whose division and `Display` cost a few hundred instructions
/// per figure) and `itoa` (no formatter).
fn push_dur(s: &mut String, d: Duration) {
    let tenths = d.as_secs().saturating_mul(10_000) + u64::from(d.subsec_micros() / 100);
    s.push_str(";dur=");
    s.push_str(itoa::Buffer::new().format(tenths / 10));
    s.push('.');
    s.push(char::from(b'0' + (tenths % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_a_quoted_base64url_hash_of_the_body() {
        let tag = etag(b"{\"profile\":{\"id\":42}}");
        let text = tag.to_str().unwrap();
        assert_eq!(text.len(), 24, "{text}");
        assert!(text.starts_with('"') && text.ends_with('"'), "{text}");
        assert!(
            text[1..23]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text}"
        );
        // The same body gets the same tag in every process (no per-process seed), so a
        // client's If-None-Match holds across restarts and replicas.
        assert_eq!(tag, etag(b"{\"profile\":{\"id\":42}}"));
        // XXH3-128 of the empty input is 99aa06d3014798d86001c324468d497f (the reference).
        assert_eq!(etag(b"").to_str().unwrap(), "\"maoG0wFHmNhgAcMkRo1Jfw\"");
        assert_ne!(tag, etag(b"{\"profile\":{\"id\":43}}"));
    }

    #[test]
    fn durations_are_milliseconds_with_one_decimal() {
        for (d, text) in [
            (Duration::ZERO, ";dur=0.0"),
            (Duration::from_micros(99), ";dur=0.0"),
            (Duration::from_micros(12_345), ";dur=12.3"),
            (Duration::from_millis(2_000), ";dur=2000.0"),
            (Duration::new(3, 450_000_000), ";dur=3450.0"),
        ] {
            let mut s = String::new();
            push_dur(&mut s, d);
            assert_eq!(s, text);
        }
    }

    #[test]
    fn if_none_match_takes_the_tag_weak_or_strong_in_a_list() {
        let tag = etag(b"{}");
        let inm = |s: String| HeaderValue::from_str(&s).unwrap();
        let t = tag.to_str().unwrap();
        assert!(not_modified(&inm(t.to_string()), &tag));
        assert!(not_modified(&inm(format!("\"x\", W/{t}")), &tag));
        assert!(not_modified(&inm("*".into()), &tag));
        assert!(!not_modified(&inm("\"x\"".into()), &tag));
    }
}
