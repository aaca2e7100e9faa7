//! TLS test helpers: an rcgen CA issuing server and client certificates, rustls clients
//! (HTTP/1.1 and h2 over a TLS stream) and an HTTPS echo backend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use super::{Answer, json_response};

/// A test certificate authority.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: CertificateDer<'static>,
}

/// A certificate and its key.
#[derive(Clone)]
pub struct Leaf {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Certificate, DER.
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// The key, DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

use rustls::pki_types::pem::PemObject;

impl Pki {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn issue(&self, cn: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A server certificate for `names` (DNS names or IPs).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.issue(
            names.first().copied().unwrap_or("server"),
            names,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with common name `cn` and subjectAltNames `names`.
    pub fn client(&self, cn: &str, names: &[&str]) -> Leaf {
        self.issue(cn, names, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A certificate (signed by this CA) whose validity ended in 2002.
    pub fn expired(&self, names: &[&str]) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// Options of a test TLS client.
#[derive(Default)]
pub struct ClientOpts<'a> {
    /// CAs to trust.
    pub roots: Vec<&'a Pki>,
    /// Client certificate to present.
    pub identity: Option<&'a Leaf>,
    /// ALPN protocols to offer (default: none).
    pub alpn: Vec<&'static [u8]>,
    /// Only TLS 1.2.
    pub tls12_only: bool,
}

/// A rustls client config.
pub fn client_config(o: ClientOpts<'_>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if o.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut roots = rustls::RootCertStore::empty();
    for p in &o.roots {
        roots.add(p.ca_der.clone()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut c = match o.identity {
        Some(leaf) => b
            .with_client_auth_cert(vec![leaf.der.clone()], leaf.key_der())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = o.alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// Connects and completes a TLS handshake; `name` is the SNI and verified name (an IP sends
/// no SNI).
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// The leaf certificate the server presented.
pub fn served_cert(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// An HTTP/1.1 or h2 connection over a TLS stream, chosen by the negotiated ALPN.
pub enum Conn {
    /// HTTP/1.1.
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// HTTP/2.
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    /// Starts HTTP over the stream (h2 when ALPN said so).
    pub async fn over(stream: TlsStream<TcpStream>) -> hyper::Result<Conn> {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Ok(Conn::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Ok(Conn::H1(send))
        }
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &mut self,
        mut req: Request<Full<Bytes>>,
    ) -> hyper::Result<(Version, Answer)> {
        let fut = async {
            let resp = match self {
                Conn::H1(s) => s.send_request(req).await?,
                Conn::H2(s) => {
                    *req.version_mut() = Version::HTTP_2;
                    s.send_request(req).await?
                }
            };
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok((
                parts.version,
                Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                },
            ))
        };
        tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .expect("request timed out")
    }

    /// GET `path` with a Host header.
    pub async fn get(&mut self, host: &str, path: &str) -> hyper::Result<(Version, Answer)> {
        let uri = match self {
            Conn::H1(_) => path.to_string(),
            Conn::H2(_) => format!("https://{host}{path}"),
        };
        let mut b = Request::get(uri);
        if matches!(self, Conn::H1(_)) {
            b = b.header("host", host);
        }
        self.send(b.body(Full::default()).unwrap()).await
    }
}

/// One HTTPS GET on a fresh connection.
pub async fn https_get(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Answer {
    let stream = tls_connect(addr, name, config)
        .await
        .expect("TLS handshake");
    let mut conn = Conn::over(stream).await.expect("HTTP over TLS");
    conn.get(name, path).await.expect("request").1
}

/// A rustls server config with one certificate and optional client verification.
pub fn server_config(leaf: &Leaf, client_ca: Option<&Pki>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.ca_der.clone()).unwrap();
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(
        b.with_single_cert(vec![leaf.der.clone()], leaf.key_der())
            .unwrap(),
    )
}

/// An HTTPS backend that answers JSON: path, headers, the SNI it was asked for and the
/// subject of the client certificate it verified.
pub struct TlsBackend {
    /// Its address.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsBackend {
    /// Starts on 127.0.0.1:0.
    pub async fn start(config: Arc<rustls::ServerConfig>) -> TlsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = stream.get_ref().1.server_name().map(str::to_string);
                    let client = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| portico::tls::ClientCert::from_der(c).subject);
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let mut headers = serde_json::Map::new();
                        for (k, v) in req.headers() {
                            headers.insert(k.to_string(), v.to_str().unwrap_or("?").into());
                        }
                        let body = serde_json::json!({
                            "path": req.uri().path(),
                            "headers": headers,
                            "sni": sni,
                            "client": client,
                        });
                        async move { Ok::<_, Infallible>(json_response(200, body)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TlsBackend { addr, task }
    }
}

/// A TLS 1.1-only ClientHello (no supported_versions extension), as an old client sends it.
pub fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    // Suites the server does support (ECDHE-ECDSA/RSA AES-128-GCM) next to old CBC ones, so
    // the refusal can only be about the version.
    body.extend_from_slice(&[0x00, 0x08, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17]); // groups: P-256
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]); // point formats
    // signature_algorithms (ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256): without it rustls
    // stops earlier with handshake_failure.
    ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Writes bytes on a new TCP connection and reads until the peer closes; `None` when it has
/// not closed within `wait`.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    if !bytes.is_empty() {
        s.write_all(bytes).await.unwrap();
    }
    let mut out = Vec::new();
    match tokio::time::timeout(wait, s.read_to_end(&mut out)).await {
        Ok(_) => Some(out),
        Err(_) => None,
    }
}
