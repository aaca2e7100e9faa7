//! Verification keys: a set of (kid, key) entries built from a secret, a PEM public key or a
//! JWK set, and the selection of the one key a token may be checked with.

use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

/// One verification key.
pub struct KeyEntry {
    /// JWK `kid`; `None` for single-key sources.
    pub kid: Option<Box<str>>,
    /// The key.
    pub key: DecodingKey,
    /// The only algorithm the key may be used with, when its JWK says so.
    pub alg: Option<Algorithm>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("kid", &self.kid)
            .field("family", &self.key.family())
            .field("alg", &self.alg)
            .finish()
    }
}

impl KeyEntry {
    /// Whether a token signed with `alg` may be checked with this key. The family test is what
    /// stops algorithm confusion (an HMAC token "signed" with an RSA public key).
    fn fits(&self, alg: Algorithm) -> bool {
        self.key.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

/// The keys of one provider at one moment.
#[derive(Debug, Default)]
pub struct KeySet {
    entries: Vec<Arc<KeyEntry>>,
}

impl KeySet {
    /// A set of one key without `kid` (secrets and PEM files).
    pub fn single(key: DecodingKey) -> KeySet {
        KeySet {
            entries: vec![Arc::new(KeyEntry {
                kid: None,
                key,
                alg: None,
            })],
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The algorithm families present.
    pub fn families(&self) -> Vec<AlgorithmFamily> {
        let mut out: Vec<AlgorithmFamily> = Vec::new();
        for e in &self.entries {
            if !out.contains(&e.key.family()) {
                out.push(e.key.family());
            }
        }
        out
    }

    /// The key for a token's `kid` and `alg`. A `kid` is only ever a lookup key. Without a `kid`,
    /// the token is checked only when exactly one key fits its algorithm; a single-key source
    /// ignores `kid`.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<KeyEntry>> {
        if let Some(kid) = kid {
            if let Some(e) = self
                .entries
                .iter()
                .find(|e| e.kid.as_deref() == Some(kid) && e.fits(alg))
            {
                return Some(e.clone());
            }
            if !(self.entries.len() == 1 && self.entries[0].kid.is_none()) {
                return None;
            }
        }
        let mut fitting = self.entries.iter().filter(|e| e.fits(alg));
        match (fitting.next(), fitting.next()) {
            (Some(e), None) => Some(e.clone()),
            _ => None,
        }
    }

    /// Parses a JWK set document. Keys that cannot be used (unknown type, `use` = `enc`, bad
    /// numbers) are skipped and counted in the returned `skipped`.
    pub fn from_jwks(json: &[u8]) -> Result<(KeySet, usize), String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc =
            serde_json::from_slice(json).map_err(|e| format!("not a JWK set document: {e}"))?;
        let mut entries = Vec::new();
        let mut skipped = 0;
        for value in doc.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                skipped += 1;
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                skipped += 1;
                continue;
            }
            let alg = match &jwk.common.key_algorithm {
                Some(a) => match Algorithm::from_str(&a.to_string()) {
                    Ok(a) => Some(a),
                    Err(_) => {
                        skipped += 1;
                        continue;
                    }
                },
                None => None,
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                skipped += 1;
                continue;
            };
            entries.push(Arc::new(KeyEntry {
                kid: jwk.common.key_id.map(String::into_boxed_str),
                key,
                alg,
            }));
        }
        Ok((KeySet { entries }, skipped))
    }
}

/// Reads a PEM public key of any supported kind (RSA, EC, Ed25519).
pub fn public_key_from_pem(pem: &[u8]) -> Result<DecodingKey, String> {
    DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .map_err(|_| "not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_selects_and_families_must_fit() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "h1", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ"},
            {"kty": "oct", "kid": "h2", "alg": "HS512", "k": "b3RoZXItb3RoZXItb3RoZXItb3RoZXItMTIzNDU2"},
            {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "weird", "kid": "w"}
        ]});
        let (set, skipped) = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(skipped, 2, "enc key and unknown kty");
        assert!(set.select(Some("h1"), Algorithm::HS256).is_some());
        assert!(set.select(Some("h1"), Algorithm::RS256).is_none());
        assert!(
            set.select(Some("h2"), Algorithm::HS256).is_none(),
            "JWK alg pins the key"
        );
        assert!(set.select(Some("nope"), Algorithm::HS256).is_none());
        assert!(
            set.select(None, Algorithm::HS512).is_none(),
            "two keys fit: no guessing"
        );
        assert_eq!(
            set.select(None, Algorithm::HS256).unwrap().kid.as_deref(),
            Some("h1")
        );
        let single = KeySet::single(DecodingKey::from_secret(b"k"));
        assert!(single.select(Some("anything"), Algorithm::HS256).is_some());
        assert!(single.select(None, Algorithm::ES256).is_none());
    }
}
