//! The verified client certificate of a TLS connection, parsed once per connection.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::HeaderValue;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

/// What a route and the upstream learn about a client that presented a verified certificate.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// Subject, RFC 4514-like (`CN=alice, O=Acme`).
    pub subject: String,
    /// subjectAltName DNS names.
    pub dns: Vec<String>,
    /// subjectAltName URIs (e.g. SPIFFE ids).
    pub uris: Vec<String>,
    /// subjectAltName e-mail addresses.
    pub emails: Vec<String>,
    /// subjectAltName IP addresses.
    pub ips: Vec<IpAddr>,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256: String,
    /// The header value forwarded upstream (`forward_client_cert`), built once.
    pub forward: HeaderValue,
}

impl ClientCert {
    /// Parses the leaf certificate rustls already verified.
    pub fn from_der(der: &[u8]) -> ClientCert {
        let mut out = ClientCert {
            subject: String::new(),
            dns: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            ips: Vec::new(),
            sha256: Sha256::digest(der)
                .iter()
                .fold(String::with_capacity(64), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                }),
            forward: HeaderValue::from_static(""),
        };
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
            out.subject = cert.subject().to_string();
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    match name {
                        GeneralName::DNSName(n) => out.dns.push((*n).to_string()),
                        GeneralName::URI(u) => out.uris.push((*u).to_string()),
                        GeneralName::RFC822Name(e) => out.emails.push((*e).to_string()),
                        GeneralName::IPAddress(b) => out.ips.extend(ip(b)),
                        _ => {}
                    }
                }
            }
        }
        out.forward = out.header_value();
        out
    }

    /// `Hash=..;Subject="..";URI=..;DNS=..;Email=..;IP=..`: the `x-forwarded-client-cert`
    /// element format that Envoy and others read.
    fn header_value(&self) -> HeaderValue {
        let mut s = format!("Hash={}", self.sha256);
        s.push_str(";Subject=");
        push_quoted(&mut s, &self.subject);
        let lists: [(&str, &[String]); 3] = [
            ("URI", &self.uris),
            ("DNS", &self.dns),
            ("Email", &self.emails),
        ];
        for (key, values) in lists {
            for v in values {
                s.push(';');
                s.push_str(key);
                s.push('=');
                if v.contains([',', ';', '=', '"']) {
                    push_quoted(&mut s, v);
                } else {
                    push_safe(&mut s, v);
                }
            }
        }
        for a in &self.ips {
            let _ = write!(s, ";IP={a}");
        }
        HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn push_quoted(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        push_char(out, c);
    }
    out.push('"');
}

fn push_safe(out: &mut String, v: &str) {
    v.chars().for_each(|c| push_char(out, c));
}

/// Visible ASCII and space pass; anything else (control, non-ASCII) and `%` are
/// percent-encoded, so a certificate can never inject into the header.
fn push_char(out: &mut String, c: char) {
    if (c == ' ' || c.is_ascii_graphic()) && c != '%' {
        out.push(c);
    } else {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_value_carries_subject_and_sans_safely() {
        let kp = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![
            "alice.example".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "alice \"a\"; \u{e9}\n");
        p.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://portico/alice".try_into().unwrap(),
        ));
        let cert = p.self_signed(&kp).unwrap();
        let c = ClientCert::from_der(cert.der());
        assert_eq!(c.dns, ["alice.example"]);
        assert_eq!(c.uris, ["spiffe://portico/alice"]);
        assert_eq!(c.ips, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let v = c.forward.to_str().unwrap();
        assert!(v.starts_with(&format!("Hash={};", c.sha256)), "{v}");
        assert!(v.contains(r#"Subject="CN=alice \"a\"; %C3%A9%0A""#), "{v}");
        assert!(
            v.contains(";URI=spiffe://portico/alice;DNS=alice.example;IP=127.0.0.1"),
            "{v}"
        );
    }
}
