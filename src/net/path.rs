//! Request path normalization: one policy, applied before routing, whose result is also the
//! path forwarded upstream (so a route check and the upstream never disagree about a path).
//!
//! The policy (documented in docs/security.md):
//! - the path must start with `/`;
//! - percent-escapes of unreserved characters (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`) are decoded,
//!   other escapes are kept with uppercase hex (RFC 3986 §6.2.2);
//! - a malformed escape, `%00`, a raw `\` or `%5C`, and `%2F` (unless `encoded_slashes = "keep"`)
//!   are refused, and so are double-encoded dots and separators (`%252E`, `%252F`, `%255C`);
//! - a segment that is `.` or `..` once decoded is refused, where the segment ends at `/`, at
//!   `;` or `%3B` (path parameters, which some servers drop), and with `keep` also at `%2F`.

use std::borrow::Cow;

/// What `%2F` (an encoded `/`) in a request path does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncodedSlashes {
    /// Refused with 400 (the default): a backend that decodes it would see another path.
    #[default]
    Reject,
    /// Kept encoded (`%2F`), part of its segment; dot checks still split on it.
    Keep,
}

impl EncodedSlashes {
    /// Parses the `server.encoded_slashes` value.
    pub fn parse(text: &str) -> Result<EncodedSlashes, String> {
        match text {
            "reject" => Ok(EncodedSlashes::Reject),
            "keep" => Ok(EncodedSlashes::Keep),
            other => Err(format!(
                "unknown value \"{other}\" (use \"reject\" or \"keep\")"
            )),
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an absolute path (`*`, empty, ...).
    NotAbsolute,
    /// A `.` or `..` segment, plain, encoded or before `;`.
    DotSegment,
    /// `%2F` under `encoded_slashes = "reject"`, or a raw or encoded backslash.
    Separator,
    /// A `%` not followed by two hex digits, or `%00`.
    BadEscape,
    /// `%25` followed by an escape of `.`, `/` or `\`.
    DoubleEncoded,
}

impl PathError {
    /// The client-facing explanation (a problem+json `detail`).
    pub fn detail(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "The request target must be an absolute path.",
            PathError::DotSegment => "The path must not contain dot-segments.",
            PathError::Separator => {
                "The path must not contain encoded slashes or backslashes (%2F, %5C, \\)."
            }
            PathError::BadEscape => "The path holds a malformed or NUL percent-escape.",
            PathError::DoubleEncoded => {
                "The path must not contain double-encoded dots or separators."
            }
        }
    }
}

/// Normalizes a request path (no query) under the policy above. Borrowed when nothing changed,
/// which is every path without `%` (the common case costs one scan, and a dot check when the
/// path has a `.`).
pub fn normalize(path: &str, slashes: EncodedSlashes) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let (mut percent, mut dot) = (false, false);
    for &b in bytes {
        match b {
            b'%' => percent = true,
            b'.' => dot = true,
            b'\\' => return Err(PathError::Separator),
            _ => {}
        }
    }
    if !percent {
        if dot {
            check_dots(path, slashes)?;
        }
        return Ok(Cow::Borrowed(path));
    }
    let out = decode_unreserved(bytes, slashes)?;
    if has_double_encoding(&out) {
        return Err(PathError::DoubleEncoded);
    }
    check_dots(&out, slashes)?;
    Ok(if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    })
}

/// Decodes escapes of unreserved characters, uppercases the others, refuses the forbidden ones.
fn decode_unreserved(bytes: &[u8], slashes: EncodedSlashes) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).and_then(|&c| hex(c)),
            bytes.get(i + 2).and_then(|&c| hex(c)),
        ) else {
            return Err(PathError::BadEscape);
        };
        let v = hi << 4 | lo;
        match v {
            0 => return Err(PathError::BadEscape),
            b'\\' => return Err(PathError::Separator),
            b'/' if slashes == EncodedSlashes::Reject => return Err(PathError::Separator),
            _ if is_unreserved(v) => out.push(v),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(hi)], HEX[usize::from(lo)]]),
        }
        i += 3;
    }
    // Only ASCII went in (the input is a &str of URI characters) or was pushed.
    String::from_utf8(out).map_err(|_| PathError::BadEscape)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `%25` then the escape of `.`, `/` or `\`: what a backend that decodes twice sees as one.
fn has_double_encoding(path: &str) -> bool {
    path.as_bytes().windows(5).any(|w| {
        w[..3].eq_ignore_ascii_case(b"%25")
            && matches!(
                [w[3].to_ascii_uppercase(), w[4].to_ascii_uppercase()],
                [b'2', b'E'] | [b'2', b'F'] | [b'5', b'C']
            )
    })
}

/// Refuses `.` and `..` segments, a segment ending at `/`, `;` or `%3B` (and `%2F` under `keep`).
fn check_dots(path: &str, slashes: EncodedSlashes) -> Result<(), PathError> {
    let dot_segment = |part: &str| matches!(before_params(part), "." | "..");
    for seg in path.split('/') {
        let refused = match slashes {
            EncodedSlashes::Reject => dot_segment(seg),
            EncodedSlashes::Keep => split_encoded_slash(seg).any(dot_segment),
        };
        if refused {
            return Err(PathError::DotSegment);
        }
    }
    Ok(())
}

/// The segment up to its first `;` or `%3B` (path parameters).
fn before_params(seg: &str) -> &str {
    let mut end = seg.find(';').unwrap_or(seg.len());
    if let Some(i) = find_ci(&seg[..end], "%3B") {
        end = i;
    }
    &seg[..end]
}

fn split_encoded_slash(seg: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(seg);
    std::iter::from_fn(move || {
        let s = rest?;
        match find_ci(s, "%2F") {
            Some(i) => {
                rest = Some(&s[i + 3..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p, EncodedSlashes::Reject).map(Cow::into_owned)
    }

    #[test]
    fn plain_paths_are_borrowed() {
        assert!(matches!(
            normalize("/api/users/7.json", EncodedSlashes::Reject),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(
            normalize("/a/%E2%82%AC", EncodedSlashes::Reject),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn decodes_unreserved_and_uppercases_the_rest() {
        assert_eq!(norm("/%7Euser/%41b%2d%5f"), Ok("/~user/Ab-_".into()));
        assert_eq!(norm("/%e2%82%ac"), Ok("/%E2%82%AC".into()));
        assert_eq!(norm("/a%3b/b"), Ok("/a%3B/b".into()));
        assert_eq!(norm("/a;b=1/c"), Ok("/a;b=1/c".into()));
        assert_eq!(norm("/.../x/.a/a."), Ok("/.../x/.a/a.".into()));
    }

    #[test]
    fn refuses_what_a_backend_could_resolve_elsewhere() {
        use PathError::*;
        for (p, e) in [
            ("x", NotAbsolute),
            ("*", NotAbsolute),
            ("/a/../b", DotSegment),
            ("/a/./b", DotSegment),
            ("/a/..", DotSegment),
            ("/a/%2e%2E/b", DotSegment),
            ("/a/.%2e", DotSegment),
            ("/a/..;/b", DotSegment),
            ("/a/..;jsessionid=1/b", DotSegment),
            ("/a/.;x", DotSegment),
            ("/a/..%3Bx/b", DotSegment),
            ("/a/..%2fb", Separator),
            ("/a/b%2F", Separator),
            ("/a/..\\b", Separator),
            ("/a/%5c", Separator),
            ("/a/%zz", BadEscape),
            ("/a/%4", BadEscape),
            ("/a/%", BadEscape),
            ("/a/%00", BadEscape),
            ("/a/%252e%252e/b", DoubleEncoded),
            ("/a/%252F", DoubleEncoded),
            ("/a/%25%32%65", DoubleEncoded),
        ] {
            assert_eq!(norm(p), Err(e), "{p}");
        }
        assert_eq!(norm("/a/%2541"), Ok("/a/%2541".into()));
    }

    #[test]
    fn keep_mode_keeps_encoded_slashes_but_splits_dot_checks_on_them() {
        let keep = |p| normalize(p, EncodedSlashes::Keep).map(Cow::into_owned);
        assert_eq!(keep("/a%2fb"), Ok("/a%2Fb".into()));
        assert_eq!(keep("/a/..%2fb"), Err(PathError::DotSegment));
        assert_eq!(keep("/a/b%2F.."), Err(PathError::DotSegment));
        assert_eq!(keep("/a/%5C"), Err(PathError::Separator));
    }

    #[test]
    fn settings_parse() {
        assert_eq!(EncodedSlashes::parse("keep"), Ok(EncodedSlashes::Keep));
        assert_eq!(EncodedSlashes::parse("reject"), Ok(EncodedSlashes::Reject));
        assert!(EncodedSlashes::parse("decode").is_err());
    }
}
