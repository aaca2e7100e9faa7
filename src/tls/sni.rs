//! Certificate choice by SNI: exact names, then one-label wildcards, then the default.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Picks the certificate for a handshake from the names in the certificates (subjectAltName).
///
/// An exact name beats a wildcard; `*.example.com` takes `a.example.com` but neither
/// `example.com` nor `a.b.example.com` (RFC 6125). Several certificates may carry the same name
/// (e.g. ECDSA and RSA): the first one whose key the client can verify is used. Clients that send
/// no SNI, or a name no certificate has, get the first certificate of the list, unless `strict`.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<Box<str>, Vec<Arc<CertifiedKey>>>,
    wildcard: HashMap<Box<str>, Vec<Arc<CertifiedKey>>>,
    fallback: Option<Vec<Arc<CertifiedKey>>>,
}

impl SniResolver {
    /// Indexes certificates by their DNS names; the first certificate is the default unless
    /// `strict`.
    pub fn new<'a>(
        certs: impl IntoIterator<Item = (Arc<CertifiedKey>, &'a [String])>,
        strict: bool,
    ) -> SniResolver {
        let mut exact: HashMap<Box<str>, Vec<Arc<CertifiedKey>>> = HashMap::new();
        let mut wildcard: HashMap<Box<str>, Vec<Arc<CertifiedKey>>> = HashMap::new();
        let mut fallback = None;
        for (key, names) in certs {
            if fallback.is_none() && !strict {
                fallback = Some(vec![key.clone()]);
            }
            for name in names {
                let (map, name) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix),
                    None => (&mut exact, name.as_str()),
                };
                let list = map.entry(name.into()).or_default();
                if !list.iter().any(|k| Arc::ptr_eq(k, &key)) {
                    list.push(key.clone());
                }
            }
        }
        SniResolver {
            exact,
            wildcard,
            fallback,
        }
    }

    /// Certificates for a (lowercase) server name, best first; `None` when no name matches.
    pub fn lookup(&self, name: &str) -> Option<&[Arc<CertifiedKey>]> {
        if let Some(list) = self.exact.get(name) {
            return Some(list);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).map(Vec::as_slice)
    }

    fn candidates(&self, server_name: Option<&str>) -> Option<&[Arc<CertifiedKey>]> {
        let found = server_name.and_then(|name| {
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                self.lookup(&name.to_ascii_lowercase())
            } else {
                self.lookup(name)
            }
        });
        found.or(self.fallback.as_deref())
    }
}

fn pick(list: &[Arc<CertifiedKey>], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
    list.iter()
        .find(|k| k.key.choose_scheme(schemes).is_some())
        .or(list.first())
        .cloned()
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let list = self.candidates(hello.server_name())?;
        pick(list, hello.signature_schemes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Arc<CertifiedKey> {
        let kp = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.test".to_string()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(kp.serialize_der().into());
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            provider.key_provider.load_private_key(der).unwrap(),
        ))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_beats_wildcard_and_wildcard_takes_one_label() {
        let (a, b) = (key(), key());
        let (na, nb) = (names(&["api.example.com"]), names(&["*.example.com"]));
        let r = SniResolver::new(
            [(a.clone(), na.as_slice()), (b.clone(), nb.as_slice())],
            true,
        );
        assert!(Arc::ptr_eq(&r.lookup("api.example.com").unwrap()[0], &a));
        assert!(Arc::ptr_eq(&r.lookup("www.example.com").unwrap()[0], &b));
        assert!(r.lookup("example.com").is_none());
        assert!(r.lookup("a.b.example.com").is_none());
        assert!(r.lookup("other.test").is_none());
        assert!(r.candidates(None).is_none(), "strict: no default");
        let upper = r.candidates(Some("API.Example.COM")).unwrap();
        assert!(Arc::ptr_eq(&upper[0], &a));
    }

    #[test]
    fn first_certificate_is_the_default_unless_strict() {
        let (a, b) = (key(), key());
        let (na, nb) = (names(&["a.test"]), names(&["b.test"]));
        let r = SniResolver::new(
            [(a.clone(), na.as_slice()), (b.clone(), nb.as_slice())],
            false,
        );
        assert!(Arc::ptr_eq(&r.candidates(None).unwrap()[0], &a));
        assert!(Arc::ptr_eq(&r.candidates(Some("zzz.test")).unwrap()[0], &a));
        assert!(Arc::ptr_eq(&r.candidates(Some("b.test")).unwrap()[0], &b));
    }

    #[test]
    fn same_name_keeps_every_certificate_in_order() {
        let (a, b) = (key(), key());
        let n = names(&["dup.test"]);
        let r = SniResolver::new([(a.clone(), n.as_slice()), (b.clone(), n.as_slice())], true);
        let list = r.lookup("dup.test").unwrap();
        assert_eq!(list.len(), 2);
        assert!(Arc::ptr_eq(&list[0], &a));
        let ecdsa = [SignatureScheme::ECDSA_NISTP256_SHA256];
        assert!(Arc::ptr_eq(&pick(list, &ecdsa).unwrap(), &a));
    }
}
