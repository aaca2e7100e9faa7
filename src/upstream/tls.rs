//! HTTPS to upstreams: trust roots (Mozilla's via webpki-roots, or `ca_file`), SNI from the
//! endpoint's host (or `server_name`), and an optional client certificate for upstream mTLS.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use http::uri::{Authority, Scheme};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::config::diag::Diagnostics;
use crate::config::file::UpstreamFile;
use crate::tls::certs;
use crate::tls::compile::{Fingerprint, provider, read_file};

/// The TLS side of an upstream's settings.
#[derive(Clone)]
pub struct UpstreamTls {
    /// Client config for `https` endpoints: roots, client certificate, versions.
    pub client_config: Arc<ClientConfig>,
    /// SNI and verified name instead of each endpoint's host.
    pub server_name: Option<String>,
    /// Files read (CA bundle, client certificate and key).
    pub files: Vec<PathBuf>,
    /// Hash of the files and settings; equal means the same TLS behaviour.
    pub fingerprint: [u8; 32],
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint && self.server_name == other.server_name
    }
}

impl Eq for UpstreamTls {}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Default for UpstreamTls {
    /// System (Mozilla) roots, no client certificate.
    fn default() -> Self {
        static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        let client_config = DEFAULT
            .get_or_init(|| {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                Arc::new(
                    client_builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            })
            .clone();
        UpstreamTls {
            client_config,
            server_name: None,
            files: Vec::new(),
            fingerprint: [0; 32],
        }
    }
}

fn client_builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
}

/// Compiles `tls`, `ca_file`, `client_cert` and `server_name` of `[upstreams.NAME]`; with
/// `tls = true` every endpoint becomes `https`. Errors are recorded in `d`.
pub fn compile(
    d: &mut Diagnostics,
    u: &UpstreamFile,
    key: &str,
    endpoints: &mut [(Scheme, Authority)],
) -> UpstreamTls {
    apply_tls_flag(d, u, key, endpoints);
    check_unused(d, u, key, endpoints);
    let server_name = u.server_name.as_ref().and_then(|v| {
        d.parse(v, format!("{key}.server_name"), |s| {
            ServerName::try_from(s)
                .map(|_| s.to_string())
                .map_err(|_| format!("bad server name \"{s}\": expected a DNS name or an IP"))
        })
    });
    if u.ca_file.is_none() && u.client_cert.is_none() {
        return UpstreamTls {
            server_name,
            ..UpstreamTls::default()
        };
    }

    let mut files = Vec::new();
    let mut fp = Fingerprint::default();
    let roots = roots(d, u, key, &mut files, &mut fp);
    let identity = identity(d, u, key, &mut files, &mut fp);
    let Some(roots) = roots else {
        return UpstreamTls::default();
    };
    if u.client_cert.is_some() && identity.is_none() {
        return UpstreamTls::default();
    }
    let builder = client_builder().with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key_der)) => match builder.with_client_auth_cert(chain, key_der) {
            Ok(c) => c,
            Err(e) => {
                let span = u.client_cert.as_ref().map_or(0..0, |c| c.span());
                d.error(
                    span,
                    format!("{key}.client_cert"),
                    format!("not usable: {e}"),
                );
                return UpstreamTls::default();
            }
        },
    };
    UpstreamTls {
        client_config: Arc::new(config),
        server_name,
        files,
        fingerprint: fp.finish(),
    }
}

/// `tls = true` makes every endpoint HTTPS; an endpoint whose scheme says otherwise is an error.
fn apply_tls_flag(
    d: &mut Diagnostics,
    u: &UpstreamFile,
    key: &str,
    endpoints: &mut [(Scheme, Authority)],
) {
    if let Some(flag) = &u.tls {
        for (i, text) in u.endpoints.get_ref().iter().enumerate() {
            let t = text.get_ref().address();
            let clash = if *flag.get_ref() {
                t.starts_with("http://")
                    .then_some("tls = true but this endpoint is http://")
            } else {
                t.starts_with("https://")
                    .then_some("tls = false but this endpoint is https://")
            };
            if let Some(msg) = clash {
                d.error(text.span(), format!("{key}.endpoints[{i}]"), msg);
            }
        }
        if *flag.get_ref() {
            endpoints.iter_mut().for_each(|(s, _)| *s = Scheme::HTTPS);
        }
    }
}

/// TLS settings on an upstream with no TLS endpoint would silently do nothing.
fn check_unused(
    d: &mut Diagnostics,
    u: &UpstreamFile,
    key: &str,
    endpoints: &[(Scheme, Authority)],
) {
    let uses_tls = endpoints.iter().any(|(s, _)| *s == Scheme::HTTPS);
    let unused = |d: &mut Diagnostics, span, name: &str| {
        d.error(
            span,
            format!("{key}.{name}"),
            "has no effect: no endpoint uses TLS (use https:// endpoints or tls = true)",
        );
    };
    if !uses_tls {
        if let Some(v) = &u.ca_file {
            unused(d, v.span(), "ca_file");
        }
        if let Some(v) = &u.client_cert {
            unused(d, v.span(), "client_cert");
        }
        if let Some(v) = &u.server_name {
            unused(d, v.span(), "server_name");
        }
    }
}

/// Trusted roots: `ca_file`, else the webpki roots.
fn roots(
    d: &mut Diagnostics,
    u: &UpstreamFile,
    key: &str,
    files: &mut Vec<PathBuf>,
    fp: &mut Fingerprint,
) -> Option<rustls::RootCertStore> {
    match &u.ca_file {
        None => Some(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        Some(ca) => {
            let k = format!("{key}.ca_file");
            read_file(d, ca, &k, files, fp).and_then(|(path, bytes)| {
                certs::load_roots(&path, &bytes)
                    .map_err(|msg| d.error(ca.span(), k, msg))
                    .ok()
            })
        }
    }
}

/// `client_cert = { cert, key }`: the certificate chain and key presented to the upstream
/// (key and certificate checked to match).
fn identity(
    d: &mut Diagnostics,
    u: &UpstreamFile,
    key: &str,
    files: &mut Vec<PathBuf>,
    fp: &mut Fingerprint,
) -> Option<ClientIdentity> {
    let entry = u.client_cert.as_ref()?;
    let k = format!("{key}.client_cert");
    let e = entry.get_ref();
    let (cert_path, cert_bytes) = read_file(d, &e.cert, &format!("{k}.cert"), files, fp)?;
    let (key_path, key_bytes) = match &e.key {
        None => (cert_path.clone(), cert_bytes.clone()),
        Some(kv) => read_file(d, kv, &format!("{k}.key"), files, fp)?,
    };
    let checked =
        certs::load_certified(&cert_path, &cert_bytes, &key_path, &key_bytes, &provider())
            .and_then(|_| certs::parse_key(&key_path, &key_bytes));
    match checked {
        Ok(key_der) => Some((certs::parse_certs(&cert_path, &cert_bytes).ok()?, key_der)),
        Err(msg) => {
            d.error(entry.span(), k, msg);
            None
        }
    }
}

/// A client certificate chain and its private key.
type ClientIdentity = (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
);
