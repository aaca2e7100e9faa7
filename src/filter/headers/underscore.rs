//! Client header names with `_`: CGI, WSGI and Rack backends fold `-` and `_` into one
//! (`HTTP_X_USER_ID`), so `X_User_Id: admin` would pass for the verified `X-User-Id`. Dropped by
//! default, as nginx's `underscores_in_headers off` does.

use http::header::{HeaderMap, HeaderName};

/// `server.underscores_in_headers`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnderscorePolicy {
    /// Client headers whose name holds `_` are removed (the default).
    #[default]
    Drop,
    /// Kept, except underscore spellings of a header the gateway sets (forwarded claims, the
    /// client-certificate header, request id, X-Forwarded-*), which are always removed.
    Allow,
    /// The request is refused with 400.
    Reject,
}

impl UnderscorePolicy {
    /// Parses the `server.underscores_in_headers` value.
    pub fn parse(text: &str) -> Result<UnderscorePolicy, String> {
        match text {
            "drop" => Ok(UnderscorePolicy::Drop),
            "allow" => Ok(UnderscorePolicy::Allow),
            "reject" => Ok(UnderscorePolicy::Reject),
            other => Err(format!(
                "unknown value \"{other}\" (use \"drop\", \"allow\" or \"reject\")"
            )),
        }
    }
}

/// A client header name held `_` under [`UnderscorePolicy::Reject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// Applies `policy` to a client's request headers. `protected` tells whether a name (spelled
/// with `-`) is one the gateway sets; it is only asked about names that hold `_`.
pub fn apply(
    policy: UnderscorePolicy,
    headers: &mut HeaderMap,
    protected: impl Fn(&str) -> bool,
) -> Result<(), Refused> {
    // One scan of the (few) names; nearly every request stops here.
    if !headers.keys().any(has_underscore) {
        return Ok(());
    }
    let doomed: Vec<HeaderName> = match policy {
        UnderscorePolicy::Reject => return Err(Refused),
        UnderscorePolicy::Drop => headers
            .keys()
            .filter(|n| has_underscore(n))
            .cloned()
            .collect(),
        UnderscorePolicy::Allow => headers
            .keys()
            .filter(|n| has_underscore(n) && protected(&n.as_str().replace('_', "-")))
            .cloned()
            .collect(),
    };
    for name in doomed {
        headers.remove(&name);
    }
    Ok(())
}

/// Whether `name` holds `_`, eight bytes a step: a `contains('_')` per name cost a `memchr`
/// call, more than the check itself for names this short.
fn has_underscore(name: &HeaderName) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let b = name.as_str().as_bytes();
    let mut i = 0;
    while i + 8 <= b.len() {
        let mut w = [0; 8];
        w.copy_from_slice(&b[i..i + 8]);
        // A byte of `v` is zero where the name has `_`; `(v - 1) & !v` sets its top bit then
        // (names are ASCII, so no byte has it set to begin with).
        let v = u64::from_ne_bytes(w) ^ (ONES * u64::from(b'_'));
        if v.wrapping_sub(ONES) & !v & HIGH != 0 {
            return true;
        }
        i += 8;
    }
    // Not `contains`: its `memchr` call for at most seven bytes cost 139 instructions more per
    // request (callgrind, `load-tests/profile`).
    #[allow(clippy::manual_contains)]
    b[i..].iter().any(|&c| c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_underscore_finds_it_anywhere() {
        for len in 1..=20 {
            let plain = "a".repeat(len);
            assert!(!has_underscore(
                &HeaderName::from_bytes(plain.as_bytes()).unwrap()
            ));
            for at in 0..len {
                let mut n = plain.clone().into_bytes();
                n[at] = b'_';
                assert!(
                    has_underscore(&HeaderName::from_bytes(&n).unwrap()),
                    "{len} {at}"
                );
            }
        }
        assert!(!has_underscore(&http::header::USER_AGENT));
    }
    use http::HeaderValue;

    fn map(names: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for n in names {
            h.insert(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        h
    }

    #[test]
    fn policies() {
        let protected = |n: &str| n == "x-user-id";
        let mut h = map(&["x_user_id", "x_other", "x-ok"]);
        apply(UnderscorePolicy::Drop, &mut h, protected).unwrap();
        assert_eq!(h.len(), 1);
        let mut h = map(&["x_user_id", "x_other", "x-ok"]);
        apply(UnderscorePolicy::Allow, &mut h, protected).unwrap();
        assert!(h.contains_key("x_other") && !h.contains_key("x_user_id"));
        let mut h = map(&["x_other"]);
        assert_eq!(
            apply(UnderscorePolicy::Reject, &mut h, protected),
            Err(Refused)
        );
        let mut h = map(&["x-ok"]);
        assert_eq!(apply(UnderscorePolicy::Reject, &mut h, protected), Ok(()));
        assert!(UnderscorePolicy::parse("off").is_err());
    }
}
