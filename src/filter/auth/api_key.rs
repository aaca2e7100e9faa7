//! `kind = "api_key"` providers at request time: the key is taken from a header (or, only when
//! the provider names one, a query parameter), hashed with SHA-256 and compared with the
//! hashes read from the key file in constant time. The key itself is never forwarded.

pub mod keys_file;

use std::collections::HashMap;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use sha2::Digest as _;

use super::AuthError;

/// A SHA-256 digest of a key.
pub type KeyHash = [u8; 32];

/// One compiled API-key provider.
#[derive(Debug)]
pub struct ApiKeyProvider {
    /// Provider name (logs).
    pub name: Arc<str>,
    /// The request header carrying the key.
    pub header: HeaderName,
    /// The query parameter that may carry the key, if allowed.
    pub query: Option<Box<str>>,
    /// The upstream header carrying the consumer name.
    pub forward_consumer: Option<HeaderName>,
    /// Consumers by the first 8 bytes of their key's digest (the full digest is compared in
    /// constant time; lookup timing depends only on a digest prefix, which tells nothing about
    /// any key).
    keys: HashMap<u64, Vec<(KeyHash, Arc<str>)>>,
}

impl ApiKeyProvider {
    /// A provider over `(digest, consumer)` pairs.
    pub fn new(
        name: Arc<str>,
        header: HeaderName,
        query: Option<Box<str>>,
        forward_consumer: Option<HeaderName>,
        entries: Vec<(KeyHash, Arc<str>)>,
    ) -> ApiKeyProvider {
        let mut keys: HashMap<u64, Vec<(KeyHash, Arc<str>)>> = HashMap::new();
        for (hash, consumer) in entries {
            keys.entry(prefix(&hash))
                .or_default()
                .push((hash, consumer));
        }
        ApiKeyProvider {
            name,
            header,
            query,
            forward_consumer,
            keys,
        }
    }

    /// How many keys the provider knows.
    pub fn len(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }

    /// Whether the provider knows no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the request presents a key this provider reads (header or allowed query).
    pub fn presented(&self, parts: &Parts) -> bool {
        parts.headers.contains_key(&self.header)
            || self
                .query
                .as_deref()
                .is_some_and(|q| query_value(parts.uri.query(), q).is_some())
    }

    /// Checks the presented key: the consumer on success. The key is removed from the request
    /// (header and query parameter) and the consumer header set, so the upstream sees who, never
    /// the credential.
    pub fn authenticate(&self, parts: &mut Parts) -> Result<Arc<str>, AuthError> {
        let mut values = parts.headers.get_all(&self.header).iter();
        let from_header = match (values.next(), values.next()) {
            (Some(_), Some(_)) => return Err(AuthError::InvalidRequest("send one API key")),
            (Some(v), None) => Some(v.as_bytes().to_vec()),
            (None, _) => None,
        };
        let from_query = self
            .query
            .as_deref()
            .and_then(|q| query_value(parts.uri.query(), q));
        let key = match (from_header, from_query) {
            (Some(_), Some(_)) => return Err(AuthError::InvalidRequest("send one API key")),
            (Some(k), None) | (None, Some(k)) => k,
            (None, None) => return Err(AuthError::MissingKey),
        };
        let consumer = self.consumer(&key).ok_or(AuthError::InvalidKey)?;
        parts.headers.remove(&self.header);
        if let Some(q) = &self.query {
            strip_query_param(&mut parts.uri, q);
        }
        if let Some(h) = &self.forward_consumer {
            if let Ok(v) = HeaderValue::from_str(&consumer) {
                parts.headers.insert(h.clone(), v);
            }
        }
        Ok(consumer)
    }

    /// The consumer whose key this is.
    fn consumer(&self, key: &[u8]) -> Option<Arc<str>> {
        let hash: KeyHash = sha2::Sha256::digest(key).into();
        let candidates = self.keys.get(&prefix(&hash))?;
        let mut found = None;
        for (stored, consumer) in candidates {
            if constant_time_eq(stored, &hash) {
                found = Some(consumer.clone());
            }
        }
        found
    }
}

fn prefix(hash: &KeyHash) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(b)
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &KeyHash, b: &KeyHash) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The percent-decoded value of the query parameter `name`.
fn query_value(query: Option<&str>, name: &str) -> Option<Vec<u8>> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name && !v.is_empty())
            .then(|| percent_encoding::percent_decode_str(v).collect::<Vec<u8>>())
    })
}

/// Removes every `name=...` pair from the query string (the rest kept in order).
fn strip_query_param(uri: &mut http::Uri, name: &str) {
    let Some(query) = uri.query() else { return };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect();
    let pq = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = http::uri::PathAndQuery::try_from(pq) {
        parts.path_and_query = Some(pq);
        if let Ok(u) = http::Uri::from_parts(parts) {
            *uri = u;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> ApiKeyProvider {
        let hash: KeyHash = sha2::Sha256::digest(b"k-123").into();
        ApiKeyProvider::new(
            "p".into(),
            HeaderName::from_static("x-api-key"),
            Some("apikey".into()),
            Some(HeaderName::from_static("x-consumer")),
            vec![(hash, "acme".into())],
        )
    }

    fn parts(uri: &str, key: Option<&str>) -> Parts {
        let mut b = http::Request::get(uri);
        if let Some(k) = key {
            b = b.header("x-api-key", k);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn header_and_query_keys() {
        let p = provider();
        let mut r = parts("/a?x=1", Some("k-123"));
        assert_eq!(&*p.authenticate(&mut r).unwrap(), "acme");
        assert!(r.headers.get("x-api-key").is_none());
        assert_eq!(r.headers["x-consumer"], "acme");
        let mut r = parts("/a?x=1&apikey=k%2D123&y=2", None);
        assert_eq!(&*p.authenticate(&mut r).unwrap(), "acme");
        assert_eq!(r.uri.to_string(), "/a?x=1&y=2");
        let mut r = parts("/a?apikey=k-123", None);
        p.authenticate(&mut r).unwrap();
        assert_eq!(r.uri.to_string(), "/a");
        assert_eq!(
            p.authenticate(&mut parts("/a", Some("k-124"))),
            Err(AuthError::InvalidKey)
        );
        assert_eq!(
            p.authenticate(&mut parts("/a", None)),
            Err(AuthError::MissingKey)
        );
    }
}
