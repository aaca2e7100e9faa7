//! Access-log lines, formatted by hand into a reused buffer and written with one `write`.
//!
//! Going through `tracing`'s formatter cost about 14,000 instructions per request (field
//! visitors, `fmt` machinery, styling); this writes the same line for a tenth of that. The line
//! still obeys `RUST_LOG` (target `access`, level INFO) and `--log-format`, and keeps the shape
//! of the other log lines:
//!
//! ```text
//! 2026-11-26T02:21:00.123456Z  INFO access: method=GET path="/api/users/7" version=HTTP/1.1 route="users" status=200 upstream="users" endpoint=10.0.0.7:8080 attempts=1 bytes_in=- bytes_out=512 duration_us=812 request_id="..." peer=127.0.0.1:50412 user_agent="curl/8.5.0" flags=-
//! {"timestamp":"2026-11-26T02:21:00.123456Z","level":"INFO","target":"access","method":"GET",...}
//! ```
//!
//! Besides stderr, lines can go to a file (`[log] access_log_file`), in its own format, reopened
//! on SIGUSR1 so logrotate can move it away.

pub mod file;

use std::cell::RefCell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::units::civil_from_days;

static JSON: AtomicBool = AtomicBool::new(false);

/// Chooses JSON lines (`--log-format json`) or text; set once by `logging::init`.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// Whether access lines are wanted at all: a subscriber is installed and `RUST_LOG` lets target
/// `access` through at INFO. Cheap: `tracing` caches the answer per call site.
pub fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// One request's line.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Request method.
    pub method: &'a str,
    /// Request path (no query).
    pub path: &'a str,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`.
    pub version: &'static str,
    /// Route id, `-` when none matched.
    pub route: &'a str,
    /// Response status.
    pub status: u16,
    /// Upstream name, `-` when none was chosen (no route, or refused before forwarding).
    pub upstream: &'a str,
    /// The endpoint the request reached last (`host:port`), `-` when none.
    pub endpoint: &'a str,
    /// Endpoints tried (more than 1 when a refused connection moved the request on).
    pub attempts: u32,
    /// Request body size when declared (`Content-Length`).
    pub bytes_in: Option<u64>,
    /// Response body size when known up front (`Content-Length`).
    pub bytes_out: Option<u64>,
    /// Time from request head to response head.
    pub duration_us: u64,
    /// The request id sent both ways.
    pub request_id: &'a str,
    /// The client.
    pub peer: SocketAddr,
    /// The client's `User-Agent`, if any.
    pub user_agent: Option<&'a str>,
    /// Why the answer is not the upstream's (see [`flag`]), if so.
    pub flags: Option<&'static str>,
    /// The fault injected into this request (`delay`, `abort`, `delay+abort`), if any: logged as
    /// a last `fault=` field only then.
    pub fault: Option<&'a str>,
    /// The W3C trace id (32 hex digits) when `[tracing]` is on: logged as `trace_id=` then.
    pub trace_id: Option<&'a str>,
}

thread_local! {
    /// Line buffer and the cached `YYYY-MM-DDTHH:MM:SS` of the last second seen.
    static BUF: RefCell<(Vec<u8>, u64, [u8; 19])> = const { RefCell::new((Vec::new(), u64::MAX, [0; 19])) };
}

/// `HTTP/1.1` and the like for a request's version.
pub fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The `flags` word of an answer the gateway made instead of the upstream (like Envoy's
/// response flags, spelt out).
pub fn flag(err: &crate::error::GatewayError) -> &'static str {
    use crate::error::GatewayError as E;
    match err {
        E::NoRoute => "no_route",
        E::MethodNotAllowed { .. } => "method_not_allowed",
        E::BadRequest(_) | E::ClientBody { .. } => "bad_request",
        E::PayloadTooLarge { .. } => "payload_too_large",
        E::UpstreamUnreachable { .. } => "upstream_connect_failure",
        E::NoHealthyUpstream { .. } => "no_healthy_upstream",
        E::Overloaded { .. } => "upstream_overloaded",
        E::NoEndpoints { .. } => "no_endpoints",
        E::UpstreamTimeout { .. } => "upstream_timeout",
        E::UpstreamProtocol { .. } => "upstream_protocol_error",
        E::ClientCertRequired | E::Unauthorized { .. } | E::Forbidden { .. } => "auth_denied",
        E::RateLimited { .. } => "rate_limited",
        E::RateLimitUnavailable { .. } => "rate_limit_store_unavailable",
        E::FaultInjected { .. } => "fault_injected",
        E::ShuttingDown => "shutting_down",
        E::ScriptError { .. } => "script_error",
        E::SagaFailed { .. } | E::SagaLogUnavailable => "saga_failed",
        E::IdempotencyKeyInUse | E::IdempotencyKeyMismatch => "idempotency_key",
        E::IpDenied { .. } => "ip_denied",
        E::CorsRejected { .. } => "cors_rejected",
        E::TunnelLimit => "tunnel_limit",
        E::HeadTooLarge => "header_too_large",
        E::UriTooLong => "uri_too_long",
        E::BffUnknownClient
        | E::BffPartFailed { .. }
        | E::BffPartTimeout { .. }
        | E::BffMissingInput { .. } => "bff_error",
    }
}

/// Writes one access line to stderr and to the access-log file, if any (one `write` call
/// each, so lines from threads never interleave).
pub fn write(entry: &Entry<'_>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    BUF.with(|cell| {
        let Ok(mut state) = cell.try_borrow_mut() else {
            return;
        };
        let (buf, cached_sec, stamp) = &mut *state;
        if *cached_sec != now.as_secs() {
            *cached_sec = now.as_secs();
            *stamp = date_time(now.as_secs());
        }
        let json = JSON.load(Ordering::Relaxed);
        buf.clear();
        format_line(buf, stamp, now.subsec_micros(), entry, json);
        let _ = std::io::stderr().lock().write_all(buf);
        file::with(|sink| {
            let wanted = sink.json.unwrap_or(json);
            if wanted != json {
                buf.clear();
                format_line(buf, stamp, now.subsec_micros(), entry, wanted);
            }
            sink.write(buf);
        });
    });
}

/// Formats a line (with its newline) into `buf`.
fn format_line(buf: &mut Vec<u8>, stamp: &[u8; 19], micros: u32, e: &Entry<'_>, json: bool) {
    let mut ts = [0u8; 27];
    ts[..19].copy_from_slice(stamp);
    ts[19] = b'.';
    let mut m = micros;
    for slot in ts[20..26].iter_mut().rev() {
        *slot = b'0' + (m % 10) as u8;
        m /= 10;
    }
    ts[26] = b'Z';
    if json {
        buf.extend_from_slice(b"{\"timestamp\":\"");
        buf.extend_from_slice(&ts);
        buf.extend_from_slice(b"\",\"level\":\"INFO\",\"target\":\"access\",\"method\":");
        json_str(buf, e.method);
        buf.extend_from_slice(b",\"path\":");
        json_str(buf, e.path);
        buf.extend_from_slice(b",\"version\":\"");
        buf.extend_from_slice(e.version.as_bytes());
        buf.extend_from_slice(b"\",\"route\":");
        json_str(buf, e.route);
        buf.extend_from_slice(b",\"status\":");
        number(buf, u64::from(e.status));
        buf.extend_from_slice(b",\"upstream\":");
        json_str(buf, e.upstream);
        buf.extend_from_slice(b",\"endpoint\":");
        json_str(buf, e.endpoint);
        buf.extend_from_slice(b",\"attempts\":");
        number(buf, u64::from(e.attempts));
        buf.extend_from_slice(b",\"bytes_in\":");
        json_number_or_null(buf, e.bytes_in);
        buf.extend_from_slice(b",\"bytes_out\":");
        json_number_or_null(buf, e.bytes_out);
        buf.extend_from_slice(b",\"duration_us\":");
        number(buf, e.duration_us);
        buf.extend_from_slice(b",\"request_id\":");
        json_str(buf, e.request_id);
        buf.extend_from_slice(b",\"peer\":\"");
        let _ = write!(buf, "{}", e.peer);
        buf.push(b'"');
        buf.extend_from_slice(b",\"user_agent\":");
        match e.user_agent {
            Some(ua) => json_str(buf, ua),
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"flags\":");
        match e.flags {
            Some(f) => json_str(buf, f),
            None => buf.extend_from_slice(b"null"),
        }
        if let Some(fault) = e.fault {
            buf.extend_from_slice(b",\"fault\":");
            json_str(buf, fault);
        }
        if let Some(id) = e.trace_id {
            buf.extend_from_slice(b",\"trace_id\":");
            json_str(buf, id);
        }
        buf.extend_from_slice(b"}\n");
    } else {
        buf.extend_from_slice(&ts);
        buf.extend_from_slice(b"  INFO access: method=");
        quoted(buf, e.method, false);
        buf.extend_from_slice(b" path=");
        quoted(buf, e.path, true);
        buf.extend_from_slice(b" version=");
        buf.extend_from_slice(e.version.as_bytes());
        buf.extend_from_slice(b" route=");
        quoted(buf, e.route, true);
        buf.extend_from_slice(b" status=");
        number(buf, u64::from(e.status));
        buf.extend_from_slice(b" upstream=");
        quoted(buf, e.upstream, true);
        buf.extend_from_slice(b" endpoint=");
        quoted(buf, e.endpoint, false);
        buf.extend_from_slice(b" attempts=");
        number(buf, u64::from(e.attempts));
        buf.extend_from_slice(b" bytes_in=");
        number_or_dash(buf, e.bytes_in);
        buf.extend_from_slice(b" bytes_out=");
        number_or_dash(buf, e.bytes_out);
        buf.extend_from_slice(b" duration_us=");
        number(buf, e.duration_us);
        buf.extend_from_slice(b" request_id=");
        quoted(buf, e.request_id, true);
        buf.extend_from_slice(b" peer=");
        let _ = write!(buf, "{}", e.peer);
        buf.extend_from_slice(b" user_agent=");
        quoted(buf, e.user_agent.unwrap_or("-"), true);
        buf.extend_from_slice(b" flags=");
        buf.extend_from_slice(e.flags.unwrap_or("-").as_bytes());
        if let Some(fault) = e.fault {
            buf.extend_from_slice(b" fault=");
            quoted(buf, fault, false);
        }
        if let Some(id) = e.trace_id {
            buf.extend_from_slice(b" trace_id=");
            buf.extend_from_slice(id.as_bytes());
        }
        buf.push(b'\n');
    }
}

fn number_or_dash(buf: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => number(buf, n),
        None => buf.push(b'-'),
    }
}

fn json_number_or_null(buf: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => number(buf, n),
        None => buf.extend_from_slice(b"null"),
    }
}

fn number(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A value as `"..."` (or bare when `quote` is false and it is plain), escaping quotes,
/// backslashes and control bytes so a crafted path cannot forge a second log line.
fn quoted(buf: &mut Vec<u8>, s: &str, quote: bool) {
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if plain && !quote {
        buf.extend_from_slice(s.as_bytes());
        return;
    }
    buf.push(b'"');
    if plain {
        buf.extend_from_slice(s.as_bytes());
    } else {
        for c in s.chars() {
            match c {
                '"' => buf.extend_from_slice(b"\\\""),
                '\\' => buf.extend_from_slice(b"\\\\"),
                c if c.is_control() => {
                    let _ = write!(buf, "\\u{{{:x}}}", u32::from(c));
                }
                c => {
                    let mut tmp = [0u8; 4];
                    buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
        }
    }
    buf.push(b'"');
}

fn json_str(buf: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the Unix epoch.
fn date_time(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, mo, d) = civil_from_days(days);
    let mut out = [0u8; 19];
    let put = |out: &mut [u8], v: u64| {
        let mut v = v;
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(&mut out[0..4], y as u64);
    out[4] = b'-';
    put(&mut out[5..7], mo);
    out[7] = b'-';
    put(&mut out[8..10], d);
    out[10] = b'T';
    put(&mut out[11..13], rem / 3600);
    out[13] = b':';
    put(&mut out[14..16], rem / 60 % 60);
    out[16] = b':';
    put(&mut out[17..19], rem % 60);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry<'_> {
        Entry {
            method: "GET",
            path,
            version: "HTTP/1.1",
            route: "users",
            status: 200,
            upstream: "-",
            endpoint: "-",
            attempts: 0,
            bytes_in: None,
            bytes_out: Some(12),
            duration_us: 812,
            request_id: "abc-1",
            peer: "127.0.0.1:50412".parse().unwrap(),
            user_agent: Some("curl/8"),
            flags: Some("auth_denied"),
            fault: None,
            trace_id: None,
        }
    }

    #[test]
    fn dates() {
        assert_eq!(&date_time(0), b"1970-01-01T00:00:00");
        assert_eq!(&date_time(951_782_400), b"2000-02-29T00:00:00");
        assert_eq!(&date_time(1_795_661_999), b"2026-11-26T02:59:59");
        assert_eq!(&date_time(4_102_444_800), b"2100-01-01T00:00:00");
    }

    #[test]
    fn text_line() {
        let mut buf = Vec::new();
        format_line(&mut buf, &date_time(0), 42, &entry("/api/users/7"), false);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "1970-01-01T00:00:00.000042Z  INFO access: method=GET path=\"/api/users/7\" \
             version=HTTP/1.1 route=\"users\" status=200 upstream=\"-\" endpoint=- attempts=0 \
             bytes_in=- bytes_out=12 duration_us=812 request_id=\"abc-1\" \
             peer=127.0.0.1:50412 user_agent=\"curl/8\" flags=auth_denied\n"
        );
    }

    #[test]
    fn text_escapes_cannot_forge_lines() {
        let mut buf = Vec::new();
        format_line(&mut buf, &date_time(0), 0, &entry("/a\"b\\c\nINFO"), false);
        let line = String::from_utf8(buf).unwrap();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.contains(r#"path="/a\"b\\c\u{a}INFO""#), "{line}");
    }

    #[test]
    fn trace_id_ends_both_shapes_when_traced() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let e = Entry {
            trace_id: Some(id),
            ..entry("/x")
        };
        let mut text = Vec::new();
        format_line(&mut text, &date_time(0), 0, &e, false);
        let text = String::from_utf8(text).unwrap();
        assert!(text.ends_with(&format!(" trace_id={id}\n")), "{text}");
        let mut json = Vec::new();
        format_line(&mut json, &date_time(0), 0, &e, true);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["trace_id"], id);
    }

    #[test]
    fn json_line() {
        let mut buf = Vec::new();
        format_line(
            &mut buf,
            &date_time(86_399),
            999_999,
            &entry("/q\"\n"),
            true,
        );
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["timestamp"], "1970-01-01T23:59:59.999999Z");
        assert_eq!(v["target"], "access");
        assert_eq!(v["path"], "/q\"\n");
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_us"], 812);
        assert_eq!(v["peer"], "127.0.0.1:50412");
    }
}
