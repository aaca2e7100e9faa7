//! TLS costs on the gateway's own compiled config: full and resumed TLS 1.3 handshakes
//! (ECDSA P-256, client and server CPU together, in memory), SNI lookup, and parsing a client
//! certificate once per mTLS connection.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use portico::tls::ClientCert;
use portico::tls::sni::SniResolver;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

struct Setup {
    server: Arc<ServerConfig>,
    ca: rustls::pki_types::CertificateDer<'static>,
    client_der: rustls::pki_types::CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["api.bench".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client = rcgen::CertificateParams::new(vec!["client.bench".to_string()]).unwrap();
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench client");
    let client = client.signed_by(&client_key, &issuer).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.path().join("api.key"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[server.tls]\nlisten = \"127.0.0.1:0\"\n\
         certificates = [{ cert = \"api.pem\", key = \"api.key\" }]\n",
    )
    .unwrap();
    let rt = portico::runtime::load(&dir.path().join("gateway.toml"), None).unwrap();
    Setup {
        server: rt.tls.as_ref().unwrap().server_config.clone(),
        ca: ca.der().clone(),
        client_der: client.der().clone(),
        _dir: dir,
    }
}

fn client_config(
    ca: &rustls::pki_types::CertificateDer<'static>,
    resume: bool,
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"h2".to_vec()];
    if !resume {
        c.resumption = Resumption::disabled();
    }
    Arc::new(c)
}

/// Moves bytes both ways until both sides finished the handshake (plus the tickets).
fn handshake(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>, name: &ServerName<'static>) {
    let mut c = ClientConnection::new(client.clone(), name.clone()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut buf = Vec::with_capacity(8192);
    for _ in 0..8 {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
        if !c.is_handshaking() && !s.is_handshaking() && !s.wants_write() {
            return;
        }
    }
    panic!("handshake did not finish");
}

fn benches(cr: &mut Criterion) {
    let setup = setup();
    let name = ServerName::try_from("api.bench").unwrap();

    let full = client_config(&setup.ca, false);
    cr.bench_function("tls13_full_handshake_p256", |b| {
        b.iter(|| handshake(&setup.server, &full, &name))
    });
    let resuming = client_config(&setup.ca, true);
    handshake(&setup.server, &resuming, &name);
    cr.bench_function("tls13_resumed_handshake", |b| {
        b.iter(|| handshake(&setup.server, &resuming, &name))
    });

    let names: Vec<String> = (0..1000).map(|i| format!("host{i}.bench")).collect();
    let key = {
        let kp = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.bench".to_string()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(kp.serialize_der().into());
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert.der().clone()],
            provider.key_provider.load_private_key(der).unwrap(),
        ))
    };
    let wild = vec!["*.wild.bench".to_string()];
    let resolver = SniResolver::new(
        [(key.clone(), names.as_slice()), (key, wild.as_slice())],
        true,
    );
    cr.bench_function("sni_lookup_1000_names", |b| {
        b.iter(|| {
            black_box(resolver.lookup(black_box("host777.bench")));
            black_box(resolver.lookup(black_box("api.wild.bench")));
        })
    });

    cr.bench_function("client_cert_parse", |b| {
        b.iter(|| ClientCert::from_der(black_box(&setup.client_der)))
    });
}

criterion_group!(tls, benches);
criterion_main!(tls);
