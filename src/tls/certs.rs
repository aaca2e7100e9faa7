//! PEM certificate, key and CA files: loading and the checks whose errors name the file.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

/// What the gateway needs to know about a certificate it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertMeta {
    /// DNS names from subjectAltName, lowercase (`*.example.com` kept as is).
    pub dns_names: Vec<String>,
    /// Subject, RFC 4514-like (`CN=api, O=Acme`).
    pub subject: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

/// A loaded certificate chain with its private key.
#[derive(Debug)]
pub struct LoadedCert {
    /// Chain and signing key, ready for rustls.
    pub key: Arc<CertifiedKey>,
    /// Leaf certificate facts.
    pub meta: CertMeta,
}

/// Reads a whole file; the error names it.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read file: {e}", path.display()))
}

fn pem_problem(path: &Path, e: &pem::Error) -> String {
    let what = match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line (truncated file?)",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM block holds invalid base64",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        pem::Error::NoItemsFound => "no PEM block of the expected kind",
        _ => "not a readable PEM file",
    };
    format!("{}: {what}", path.display())
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Parses every `CERTIFICATE` block of a PEM file (leaf first for a chain).
pub fn parse_certs(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if !looks_like_pem(bytes) {
        return Err(format!(
            "{}: not PEM (no \"-----BEGIN CERTIFICATE-----\" block; DER files must be converted)",
            path.display()
        ));
    }
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_problem(path, &e))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected a \"-----BEGIN CERTIFICATE-----\" block)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of a PEM file.
pub fn parse_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if !looks_like_pem(bytes) {
        return Err(format!(
            "{}: not PEM (no \"-----BEGIN ... PRIVATE KEY-----\" block)",
            path.display()
        ));
    }
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "{}: no private key in it (expected a \"-----BEGIN PRIVATE KEY-----\" block)",
            path.display()
        ),
        other => pem_problem(path, &other),
    })
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn date(unix: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(unix)
        .map_or_else(|_| unix.to_string(), |t| t.to_string())
}

/// Parses one certificate and refuses it when it has expired.
pub fn inspect(path: &Path, der: &CertificateDer<'_>) -> Result<CertMeta, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("{}: not a valid X.509 certificate: {e}", path.display()))?;
    let not_after = cert.validity().not_after.timestamp();
    if not_after < now_unix() {
        return Err(format!(
            "{}: certificate \"{}\" expired on {}",
            path.display(),
            cert.subject(),
            date(not_after)
        ));
    }
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                dns_names.push(n.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    Ok(CertMeta {
        dns_names,
        subject: cert.subject().to_string(),
        not_after,
    })
}

/// Loads a chain and its key, checks every certificate's validity and that the key belongs to
/// the leaf. `cert_bytes`/`key_bytes` are the files' contents (the key may sit in the cert file).
pub fn load_certified(
    cert_path: &Path,
    cert_bytes: &[u8],
    key_path: &Path,
    key_bytes: &[u8],
    provider: &CryptoProvider,
) -> Result<LoadedCert, String> {
    let chain = parse_certs(cert_path, cert_bytes)?;
    let meta = inspect(cert_path, &chain[0])?;
    for c in &chain[1..] {
        inspect(cert_path, c)?;
    }
    let key = parse_key(key_path, key_bytes)?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        format!(
            "{}: private key not usable (supported: RSA, ECDSA P-256/P-384, Ed25519): {e}",
            key_path.display()
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(format!(
                "{}: private key does not match the certificate in {}",
                key_path.display(),
                cert_path.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "{}: certificate not usable: {e}",
                cert_path.display()
            ));
        }
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        meta,
    })
}

/// Loads a PEM CA bundle as trust anchors; every certificate must parse and be unexpired.
pub fn load_roots(path: &Path, bytes: &[u8]) -> Result<RootCertStore, String> {
    let certs = parse_certs(path, bytes)?;
    let mut roots = RootCertStore::empty();
    for c in certs {
        inspect(path, &c)?;
        roots
            .add(c)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn loads_a_matching_pair_and_reads_names() {
        let (cert, key) = self_signed(&["API.example.com", "*.example.com"]);
        let p = Path::new("api.pem");
        let loaded = load_certified(p, cert.as_bytes(), p, key.as_bytes(), &provider()).unwrap();
        assert_eq!(loaded.meta.dns_names, ["api.example.com", "*.example.com"]);
        assert!(loaded.meta.not_after > now_unix());
    }

    #[test]
    fn names_the_file_and_the_problem() {
        let (cert, key) = self_signed(&["a.test"]);
        let (_, other_key) = self_signed(&["b.test"]);
        let c = Path::new("certs/a.pem");
        let k = Path::new("certs/a.key");
        let err = |cert: &str, key: &str| {
            load_certified(c, cert.as_bytes(), k, key.as_bytes(), &provider()).unwrap_err()
        };
        let e = err("hello", &key);
        assert!(e.starts_with("certs/a.pem: not PEM"), "{e}");
        let e = err(&cert, &cert);
        assert!(e.starts_with("certs/a.key: no private key"), "{e}");
        let e = err(&key, &key);
        assert!(e.starts_with("certs/a.pem: no certificate"), "{e}");
        let e = err(&cert, &other_key);
        assert!(
            e.contains("certs/a.key: private key does not match the certificate in certs/a.pem"),
            "{e}"
        );
        let truncated = &cert[..cert.len() / 2];
        let e = err(truncated, &key);
        assert!(e.starts_with("certs/a.pem: a PEM block"), "{e}");
    }

    #[test]
    fn refuses_expired() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.test".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let cert = params.self_signed(&key).unwrap().pem();
        let p = Path::new("old.pem");
        let e = load_certified(
            p,
            cert.as_bytes(),
            p,
            key.serialize_pem().as_bytes(),
            &provider(),
        )
        .unwrap_err();
        assert!(e.starts_with("old.pem: certificate"), "{e}");
        assert!(e.contains("expired on Jan  1 00:00:00 2002"), "{e}");
        let e = load_roots(p, cert.as_bytes()).unwrap_err();
        assert!(e.contains("expired"), "{e}");
    }
}
