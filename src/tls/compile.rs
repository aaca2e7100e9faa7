//! `[server.tls]` validation and compilation into [`TlsSettings`]: every file is read, parsed
//! and checked here, so a bad certificate fails the (re)load and the old one keeps serving.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::certs::{self, LoadedCert};
use super::sni::SniResolver;
use super::{CertSummary, ClientAuth, TlsSettings};
use crate::config::diag::Diagnostics;
use crate::config::file::{HstsFile, TlsFile};
use crate::config::units::parse_duration;

const KEY: &str = "server.tls";

/// The crypto provider every TLS config of the gateway is built with.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// Hashes the inputs a TLS config is built from (file names and contents, settings).
#[derive(Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    /// Adds one labelled input.
    pub fn add(&mut self, label: &str, bytes: &[u8]) {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// The digest.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Reads a file referenced from gateway.toml, recording the path and its content; a read
/// error is reported at the key.
pub fn read_file(
    d: &mut Diagnostics,
    value: &Spanned<String>,
    key: &str,
    files: &mut Vec<PathBuf>,
    fp: &mut Fingerprint,
) -> Option<(PathBuf, Vec<u8>)> {
    let path = crate::config::resolve(&d.source.path, value.get_ref());
    if !files.contains(&path) {
        files.push(path.clone());
    }
    match certs::read(&path) {
        Ok(bytes) => {
            fp.add(&path.to_string_lossy(), &bytes);
            Some((path, bytes))
        }
        Err(msg) => {
            d.error(value.span(), key, msg);
            None
        }
    }
}

/// Compiles `[server.tls]`; `None` when it is absent or has errors (recorded in `d`).
pub fn compile(
    d: &mut Diagnostics,
    file: Option<&Spanned<TlsFile>>,
    previous: Option<&TlsSettings>,
) -> Option<TlsSettings> {
    let file = file?;
    let t = file.get_ref();
    let before = d.errors.len();
    let mut files = Vec::new();
    let mut fp = Fingerprint::default();

    let listen = d.parse(&t.listen, format!("{KEY}.listen"), |s| {
        s.parse::<SocketAddr>()
            .map_err(|_| format!("bad address \"{s}\": expected IP:PORT such as \"0.0.0.0:8443\""))
    });

    let strict_sni = t.strict_sni.unwrap_or(false);
    let loaded = certificates(d, t, strict_sni, &mut files, &mut fp);

    let (client_auth, verifier) = client_auth(d, t, &mut files, &mut fp);
    let forward_client_cert = forward_client_cert(d, t, client_auth);
    let tls13_only = tls13_only(d, t);
    fp.add(
        "settings",
        format!("{strict_sni} {client_auth:?} {tls13_only}").as_bytes(),
    );

    let handshake_timeout = d.positive_duration_or(
        &t.handshake_timeout,
        &format!("{KEY}.handshake_timeout"),
        Duration::from_secs(10),
    );
    let redirect_port = t.redirect_port.as_ref().and_then(|p| redirect_port(d, p));
    let hsts = t.hsts.as_ref().and_then(|h| hsts(d, h));

    if d.errors.len() > before {
        return None;
    }
    let fingerprint = fp.finish();
    // Same files and settings: keep the built rustls config (and its session cache).
    let kept = previous
        .filter(|p| p.fingerprint == fingerprint)
        .map(|p| p.server_config.clone());
    let server_config = match kept {
        Some(c) => c,
        None => match server_config(&loaded, strict_sni, verifier, tls13_only) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                d.error(
                    file.span(),
                    KEY,
                    format!("cannot build the TLS config: {e}"),
                );
                return None;
            }
        },
    };
    Some(TlsSettings {
        listen: listen?,
        server_config,
        handshake_timeout,
        client_auth,
        forward_client_cert,
        redirect_https: t.redirect_https.unwrap_or(false),
        redirect_port,
        hsts,
        certificates: loaded
            .into_iter()
            .map(|(file, c)| CertSummary { file, meta: c.meta })
            .collect(),
        files,
        fingerprint,
    })
}

/// `forward_client_cert`: the header that carries the verified client certificate upstream;
/// only meaningful when client certificates are verified.
fn forward_client_cert(
    d: &mut Diagnostics,
    t: &TlsFile,
    client_auth: ClientAuth,
) -> Option<HeaderName> {
    let h = t.forward_client_cert.as_ref()?;
    let key = format!("{KEY}.forward_client_cert");
    let name = d.parse(h, key.clone(), |s| {
        HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("bad header name \"{s}\""))
    })?;
    if client_auth == ClientAuth::Off {
        d.error(
            h.span(),
            key,
            "needs `client_ca`: without it no client certificate is verified",
        );
    }
    Some(name)
}

/// `min_version`: "1.2" (default) or "1.3".
fn tls13_only(d: &mut Diagnostics, t: &TlsFile) -> bool {
    match t.min_version.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "1.2")) => false,
        Some((_, "1.3")) => true,
        Some((v, other)) => {
            d.error(
                v.span(),
                format!("{KEY}.min_version"),
                format!("unknown TLS version \"{other}\" (use \"1.2\" or \"1.3\")"),
            );
            false
        }
    }
}

/// `redirect_port`: where `redirect_https` points when the HTTPS port seen by clients differs
/// from the one bound (a port mapping in front).
fn redirect_port(d: &mut Diagnostics, p: &Spanned<i64>) -> Option<u16> {
    let port = u16::try_from(*p.get_ref()).ok().filter(|&p| p > 0);
    if port.is_none() {
        d.error(
            p.span(),
            format!("{KEY}.redirect_port"),
            format!("must be a port between 1 and 65535, got {}", p.get_ref()),
        );
    }
    port
}

fn certificates(
    d: &mut Diagnostics,
    t: &TlsFile,
    strict_sni: bool,
    files: &mut Vec<PathBuf>,
    fp: &mut Fingerprint,
) -> Vec<(PathBuf, LoadedCert)> {
    let list = t.certificates.get_ref();
    if list.is_empty() {
        d.error(
            t.certificates.span(),
            format!("{KEY}.certificates"),
            "needs at least one { cert = \"...\", key = \"...\" }",
        );
    }
    let provider = provider();
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let key = format!("{KEY}.certificates[{i}]");
        let e = entry.get_ref();
        let Some((cert_path, cert_bytes)) =
            read_file(d, &e.cert, &format!("{key}.cert"), files, fp)
        else {
            continue;
        };
        let (key_path, key_bytes) = match &e.key {
            None => (cert_path.clone(), cert_bytes.clone()),
            Some(k) => match read_file(d, k, &format!("{key}.key"), files, fp) {
                Some(pair) => pair,
                None => continue,
            },
        };
        match certs::load_certified(&cert_path, &cert_bytes, &key_path, &key_bytes, &provider) {
            Ok(loaded) => {
                if loaded.meta.dns_names.is_empty() && (i > 0 || strict_sni) {
                    d.error(
                        entry.span(),
                        key,
                        format!(
                            "{}: the certificate has no DNS name in subjectAltName, so SNI can \
                             never select it (only the first certificate serves clients without \
                             a matching name, and not with strict_sni)",
                            cert_path.display()
                        ),
                    );
                }
                out.push((cert_path, loaded));
            }
            Err(msg) => d.error(entry.span(), key, msg),
        }
    }
    out
}

fn client_auth(
    d: &mut Diagnostics,
    t: &TlsFile,
    files: &mut Vec<PathBuf>,
    fp: &mut Fingerprint,
) -> (
    ClientAuth,
    Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) {
    let mode = match &t.client_auth {
        None => ClientAuth::Required,
        Some(v) => match v.get_ref().as_str() {
            "required" => ClientAuth::Required,
            "optional" => ClientAuth::Optional,
            other => {
                d.error(
                    v.span(),
                    format!("{KEY}.client_auth"),
                    format!("unknown value \"{other}\" (use \"required\" or \"optional\")"),
                );
                ClientAuth::Required
            }
        },
    };
    let Some(ca) = &t.client_ca else {
        if let Some(v) = &t.client_auth {
            d.error(
                v.span(),
                format!("{KEY}.client_auth"),
                "needs `client_ca` (the CA bundle client certificates are verified against)",
            );
        }
        return (ClientAuth::Off, None);
    };
    let key = format!("{KEY}.client_ca");
    let Some((path, bytes)) = read_file(d, ca, &key, files, fp) else {
        return (mode, None);
    };
    let roots = match certs::load_roots(&path, &bytes) {
        Ok(r) => r,
        Err(msg) => {
            d.error(ca.span(), key, msg);
            return (mode, None);
        }
    };
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = match mode {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::Required | ClientAuth::Off => builder,
    };
    match builder.build() {
        Ok(v) => (mode, Some(v)),
        Err(e) => {
            d.error(
                ca.span(),
                key,
                format!("{}: cannot verify clients with it: {e}", path.display()),
            );
            (mode, None)
        }
    }
}

fn hsts(d: &mut Diagnostics, h: &Spanned<HstsFile>) -> Option<HeaderValue> {
    let key = format!("{KEY}.hsts");
    let f = h.get_ref();
    let max_age = match &f.max_age {
        None => Duration::from_secs(365 * 86400),
        Some(v) => d.parse(v, format!("{key}.max_age"), parse_duration)?,
    };
    let subdomains = f.include_subdomains.unwrap_or(false);
    let preload = f.preload.unwrap_or(false);
    if preload && (!subdomains || max_age < Duration::from_secs(365 * 86400)) {
        d.error(
            h.span(),
            key,
            "preload needs include_subdomains = true and max_age of at least 365d (browser preload lists require both)",
        );
        return None;
    }
    let mut v = format!("max-age={}", max_age.as_secs());
    if subdomains {
        v.push_str("; includeSubDomains");
    }
    if preload {
        v.push_str("; preload");
    }
    HeaderValue::try_from(v).ok()
}

fn server_config(
    loaded: &[(PathBuf, LoadedCert)],
    strict_sni: bool,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    tls13_only: bool,
) -> Result<ServerConfig, rustls::Error> {
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions)?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let resolver = SniResolver::new(
        loaded
            .iter()
            .map(|(_, c)| (c.key.clone(), c.meta.dns_names.as_slice())),
        strict_sni,
    );
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless resumption: returning clients skip the full handshake.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(config)
}

/// Adds every certificate, key and CA file of the listener and of each TLS client config
/// (`clients`: the upstreams' files and fingerprints) to `sources`, so a change to any of them
/// reloads, and returns a digest of their contents for the config version.
pub fn add_sources<'a>(
    sources: &mut Vec<PathBuf>,
    tls: Option<&'a TlsSettings>,
    clients: impl Iterator<Item = (&'a Vec<PathBuf>, [u8; 32])>,
) -> [u8; 32] {
    let mut digest = Fingerprint::default();
    let listener = tls.map(|t| (&t.files, t.fingerprint));
    for (files, fingerprint) in listener.into_iter().chain(clients) {
        digest.add("tls", &fingerprint);
        for path in files {
            if !sources.contains(path) {
                sources.push(path.clone());
            }
        }
    }
    digest.finish()
}
