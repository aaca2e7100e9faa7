//! Unit tests of endpoint parsing and the shadow Host.

use super::*;

#[test]
fn endpoints_parse() {
    let (s, a) = parse_endpoint("127.0.0.1:7001").unwrap();
    assert_eq!((s.as_str(), a.as_str()), ("http", "127.0.0.1:7001"));
    assert_eq!(
        parse_endpoint("https://api.example.com:443").unwrap().0,
        Scheme::HTTPS
    );
    assert!(parse_endpoint("127.0.0.1").unwrap_err().contains("port"));
    assert!(parse_endpoint("ftp://x:1").is_err());
    assert!(parse_endpoint("http://x:1/path").is_err());
    assert!(parse_endpoint("not an address").is_err());
}

#[test]
fn shadow_hosts() {
    let shadow = |t: &'static str| shadow_host(&HeaderValue::from_static(t));
    assert_eq!(shadow("users.internal:8080"), "users.internal-shadow:8080");
    assert_eq!(shadow("api.example.com"), "api.example.com-shadow");
    assert_eq!(shadow("[::1]:8080"), "[::1]-shadow:8080");
    assert_eq!(shadow("[::1]"), "[::1]-shadow");
}

#[test]
fn host_headers_drop_default_ports_only() {
    let host = |text: &str| {
        let (scheme, authority) = parse_endpoint(text).unwrap();
        host_header(&scheme, &authority)
    };
    assert_eq!(host("127.0.0.1:7001"), "127.0.0.1:7001");
    assert_eq!(host("http://api.example.com:80"), "api.example.com");
    assert_eq!(host("https://api.example.com:443"), "api.example.com");
    assert_eq!(host("https://api.example.com:80"), "api.example.com:80");
    assert_eq!(host("http://[::1]:8080"), "[::1]:8080");
}
