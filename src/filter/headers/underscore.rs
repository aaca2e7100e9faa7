//! Client header names with `_`: CGI, WSGI and Rack backends fold `-` and `_` into one
//! (`HTTP_X_USER_ID`), so `X_User_Id: admin` would pass for the verified `X-User-Id`. Dropped by
//! default, as nginx's `underscores_in_headers off` does.

use http::header::{HeaderMap, HeaderName};

use crate::net::bytes::has_ascii_byte;

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

/// Whether `name` holds `_` (a `contains('_')` per name cost a `memchr` call each).
fn has_underscore(name: &HeaderName) -> bool {
    // Field names are ASCII.
    has_ascii_byte(name.as_str().as_bytes(), b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

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
