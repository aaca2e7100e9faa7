//! Finding the bearer token in a request: `Authorization: Bearer` (scheme case-insensitive) or a
//! configured cookie. Tokens in the query string, two Authorization headers and oversized
//! tokens are refused when found; malformed ones by [`text`], before any decoding.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

use super::AuthError;

/// Tokens larger than this are refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Where the token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// `Authorization: Bearer`.
    Header,
    /// The named cookie.
    Cookie(&'a str),
}

/// Finds the request's token, size-checked (its alphabet is [`text`]'s to check); `cookies` are
/// the cookie names the route's providers read.
pub fn find<'h, 'c>(
    headers: &'h HeaderMap,
    query: Option<&str>,
    cookies: &'c [Box<str>],
) -> Result<(&'h [u8], Source<'c>), AuthError> {
    if query.is_some_and(query_has_token) {
        return Err(AuthError::InvalidRequest(
            "tokens in the URL are refused; send an Authorization header",
        ));
    }
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    let first = auth.next();
    if auth.next().is_some() {
        return Err(AuthError::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    if let Some(value) = first {
        let bytes = value.as_bytes();
        let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
            Some(i) => (&bytes[..i], &bytes[i..]),
            None => (bytes, &b""[..]),
        };
        if scheme.eq_ignore_ascii_case(b"bearer") {
            let token = rest.trim_ascii();
            if token.is_empty() {
                return Err(AuthError::InvalidRequest("empty bearer token"));
            }
            return sized(token).map(|t| (t, Source::Header));
        }
        // Another scheme (Basic, ...) is not ours: treat the request as carrying no token.
    }
    for name in cookies {
        if let Some(token) = cookie(headers, name) {
            return sized(token.as_bytes()).map(|t| (t, Source::Cookie(name)));
        }
    }
    Err(AuthError::Missing)
}

/// The bytes of an RFC 6750 b64token: letters, digits and `-._~+/=`.
static B64TOKEN: [bool; 256] = {
    let mut ok = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        ok[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    ok
};

/// The token, unless it is over [`MAX_TOKEN_BYTES`] (refused before it is even digested).
fn sized(token: &[u8]) -> Result<&[u8], AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::InvalidToken("the token is too large"));
    }
    Ok(token)
}

/// A found token as text, when it is an RFC 6750 b64token (JWTs use base64url and dots).
pub fn text(token: &[u8]) -> Result<&str, AuthError> {
    // One table look-up per byte: a JWT is hundreds of bytes.
    if !token.iter().all(|&b| B64TOKEN[usize::from(b)]) {
        return Err(AuthError::InvalidToken("the token is malformed"));
    }
    std::str::from_utf8(token).map_err(|_| AuthError::InvalidToken("the token is malformed"))
}

fn query_has_token(query: &str) -> bool {
    query.split('&').any(|kv| {
        let name = kv.split('=').next().unwrap_or("");
        name.eq_ignore_ascii_case("access_token")
            || name.eq_ignore_ascii_case("id_token")
            || name.eq_ignore_ascii_case("token")
    })
}

/// The value of cookie `name`, if sent and not empty.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.trim_matches('"'))
}

/// Removes cookie `name` from the Cookie header(s), keeping the others.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(name))
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = http::HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer a.b.c", "bearer a.b.c", "BEARER   a.b.c "] {
            let h = headers(&[("authorization", v)]);
            assert_eq!(
                find(&h, None, &[]).unwrap(),
                (&b"a.b.c"[..], Source::Header)
            );
        }
    }

    #[test]
    fn refusals() {
        let err = |h: &HeaderMap, q: Option<&str>| find(h, q, &[]).unwrap_err();
        assert!(matches!(err(&headers(&[]), None), AuthError::Missing));
        assert!(matches!(
            err(&headers(&[("authorization", "Basic dTpw")]), None),
            AuthError::Missing
        ));
        assert!(matches!(
            err(&headers(&[("authorization", "Bearer ")]), None),
            AuthError::InvalidRequest(_)
        ));
        assert!(matches!(
            err(
                &headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
                None
            ),
            AuthError::InvalidRequest(_)
        ));
        assert!(matches!(
            err(
                &headers(&[("authorization", "Bearer a.b.c")]),
                Some("x=1&access_token=a.b.c")
            ),
            AuthError::InvalidRequest(_)
        ));
        let quoted = headers(&[("authorization", "Bearer a\"b")]);
        let (found, _) = find(&quoted, None, &[]).unwrap();
        assert!(matches!(text(found), Err(AuthError::InvalidToken(_))));
        let mut h = HeaderMap::new();
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        h.insert(AUTHORIZATION, HeaderValue::from_str(&huge).unwrap());
        assert!(matches!(err(&h, None), AuthError::InvalidToken(_)));
    }

    #[test]
    fn the_token_alphabet_is_exactly_rfc_6750s() {
        for b in 0..=255u8 {
            let rule = b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
            assert_eq!(text(&[b]).is_ok(), rule, "byte {b:#04x}");
        }
    }

    #[test]
    fn cookies() {
        let names: Vec<Box<str>> = vec!["session".into()];
        let h = headers(&[("cookie", "theme=dark; session=a.b.c; x=1")]);
        assert_eq!(
            find(&h, None, &names).unwrap(),
            (&b"a.b.c"[..], Source::Cookie("session"))
        );
        let mut h = h;
        remove_cookie(&mut h, "session");
        assert_eq!(h[COOKIE], "theme=dark; x=1");
        assert!(matches!(
            find(&headers(&[("cookie", "session=")]), None, &names).unwrap_err(),
            AuthError::Missing
        ));
    }
}
