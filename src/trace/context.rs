//! W3C Trace Context: parsing and writing `traceparent`, bounding `tracestate`, new ids.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use http::HeaderValue;

/// Longest `tracestate` passed on (the W3C limit is 32 list members; 512 bytes is what the
/// spec asks every vendor to propagate at least).
pub const MAX_TRACESTATE: usize = 512;

/// The `traceparent` of an incoming request, when valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The trace the request belongs to (never all zero).
    pub trace_id: [u8; 16],
    /// The caller's span (never all zero).
    pub span_id: [u8; 8],
    /// The caller sampled this trace (flag bit 0).
    pub sampled: bool,
}

/// Parses a `traceparent` value: `VERSION-TRACEID-SPANID-FLAGS`, lowercase hex. Version `ff`
/// and all-zero ids are invalid; a later version may append fields after a `-` (W3C §3.2.4).
pub fn parse(value: &HeaderValue) -> Option<Parent> {
    let v = value.as_bytes();
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex_byte(&v[0..2])?;
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    hex_into(&v[3..35], &mut trace_id)?;
    hex_into(&v[36..52], &mut span_id)?;
    let flags = hex_byte(&v[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Writes a version-00 `traceparent`.
pub fn format(trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) -> HeaderValue {
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    write_hex(trace_id, &mut out[3..35]);
    out[35] = b'-';
    write_hex(span_id, &mut out[36..52]);
    out[52] = b'-';
    out[53..55].copy_from_slice(if sampled { b"01" } else { b"00" });
    HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value")
}

/// The `tracestate` to pass on: unchanged when within [`MAX_TRACESTATE`], else dropped (a
/// truncated list could cut a member in half).
pub fn tracestate(value: Option<&HeaderValue>) -> Option<HeaderValue> {
    value.filter(|v| v.len() <= MAX_TRACESTATE).cloned()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    write_hex(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

fn write_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
}

fn hex_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = hex_byte(pair)?;
    }
    Some(())
}

/// One byte from two lowercase hex digits (uppercase is invalid in `traceparent`).
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(
        std::collections::hash_map::RandomState::new().build_hasher().finish() | 1,
    );
}

/// 64 random bits from a per-thread wyrand seeded by the OS (ids need to be unique, not secret).
fn next_u64() -> u64 {
    RNG.with(|cell| {
        let s = cell.get().wrapping_add(0xa076_1d64_78bd_642f);
        cell.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A new, non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = next_u64();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// A new, non-zero trace id.
pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_u64().to_be_bytes());
    id[8..].copy_from_slice(&new_span_id());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn parses_and_formats_round_trip() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = parse(&hv(text)).unwrap();
        assert!(p.sampled);
        assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(format(&p.trace_id, &p.span_id, true), text);
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(&hv(bad)), None, "{bad}");
        }
        // A later version may carry more fields.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-abc";
        assert!(parse(&hv(future)).is_some_and(|p| !p.sampled));
    }

    #[test]
    fn tracestate_is_bounded() {
        assert_eq!(tracestate(Some(&hv("a=1,b=2"))), Some(hv("a=1,b=2")));
        let long = "k=".to_string() + &"v".repeat(MAX_TRACESTATE);
        assert_eq!(tracestate(Some(&hv(&long))), None);
    }

    #[test]
    fn new_ids_are_distinct_and_non_zero() {
        let (a, b) = (new_trace_id(), new_trace_id());
        assert_ne!(a, b);
        assert_ne!(new_span_id(), [0; 8]);
    }
}
