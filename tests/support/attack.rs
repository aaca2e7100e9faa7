//! Raw-socket attack helpers: HTTP/1.1 bytes and HTTP/2 frames written by hand, and readers
//! that tell what the gateway answered (a status, a reset, a GOAWAY, a close) within a bound.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One client connection spoken to byte by byte.
pub struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

/// An HTTP/1.1 response read off a [`Raw`] connection.
#[derive(Debug)]
pub struct H1Response {
    /// Status code.
    pub status: u16,
    /// The head, lowercased.
    pub head: String,
    /// The body (content-length or chunked).
    pub body: Vec<u8>,
}

impl H1Response {
    /// The body as JSON (the echo backend's view of the request).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Raw {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Writes bytes; false when the peer closed, or stopped reading for 5 s (backpressure).
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.s.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }

    /// Reads more bytes into the buffer; false on close, error or timeout.
    async fn fill(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(within, self.s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// Reads exactly `n` bytes; `None` on close or timeout.
    pub async fn take(&mut self, n: usize, within: Duration) -> Option<Vec<u8>> {
        let until = tokio::time::Instant::now() + within;
        while self.buf.len() < n {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.fill(left).await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    async fn line(&mut self, within: Duration) -> Option<String> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.fill(left).await {
                return None;
            }
        }
    }

    /// Reads one HTTP/1.1 response; `None` when the connection closed or `within` passed first.
    pub async fn response(&mut self, within: Duration) -> Option<H1Response> {
        let status_line = self.line(within).await?;
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let mut head = status_line.to_ascii_lowercase();
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let line = self.line(within).await?;
            if line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().ok()?;
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
            head.push_str("\r\n");
            head.push_str(&lower);
        }
        let body = if status == 101 || status == 304 {
            Vec::new()
        } else if chunked {
            let mut body = Vec::new();
            loop {
                let size = usize::from_str_radix(self.line(within).await?.trim(), 16).ok()?;
                if size == 0 {
                    self.line(within).await?;
                    break;
                }
                body.extend(self.take(size, within).await?);
                self.line(within).await?;
            }
            body
        } else {
            self.take(length, within).await?
        };
        Some(H1Response { status, head, body })
    }

    /// Reads (and drops) whatever comes until the peer closes; true when it closed within
    /// `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut sink = [0u8; 4096];
        let closed = async {
            loop {
                match self.s.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, closed).await.is_ok()
    }

    /// Reads one HTTP/2 frame.
    pub async fn frame(&mut self, within: Duration) -> Option<Frame> {
        let head = self.take(9, within).await?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let payload = self.take(len, within).await?;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        })
    }

    /// Reads frames (acknowledging the server's SETTINGS) until something ends `stream`: its
    /// response status, a reset, a GOAWAY, or the connection closing.
    pub async fn h2_outcome(&mut self, stream: u32, within: Duration) -> H2Outcome {
        let until = tokio::time::Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return H2Outcome::TimedOut;
            }
            let Some(f) = self.frame(left).await else {
                return if tokio::time::Instant::now() >= until {
                    H2Outcome::TimedOut
                } else {
                    H2Outcome::Closed
                };
            };
            match f.kind {
                SETTINGS if f.flags & ACK == 0 => {
                    self.send(&frame(SETTINGS, ACK, 0, &[])).await;
                }
                HEADERS if f.stream == stream => {
                    return match status_of(&f.payload) {
                        Some(s) => H2Outcome::Status(s),
                        None => H2Outcome::Status(0),
                    };
                }
                RST_STREAM if f.stream == stream => {
                    return H2Outcome::Reset(u32::from_be_bytes(
                        f.payload[..4].try_into().unwrap(),
                    ));
                }
                GOAWAY => {
                    return H2Outcome::GoAway(u32::from_be_bytes(
                        f.payload[4..8].try_into().unwrap(),
                    ));
                }
                _ => {}
            }
        }
    }
}

impl Raw {
    /// After a response head on `stream`, reads its DATA frames up to END_STREAM.
    pub async fn h2_body(&mut self, stream: u32, within: Duration) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let f = self.frame(within).await?;
            if f.stream != stream {
                continue;
            }
            if f.kind == DATA {
                body.extend_from_slice(&f.payload);
            }
            if f.kind == RST_STREAM {
                return None;
            }
            if f.flags & END_STREAM != 0 && (f.kind == DATA || f.kind == HEADERS) {
                return Some(body);
            }
        }
    }
}

/// What ended an HTTP/2 stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2Outcome {
    /// A response head with this status (0: not decodable here).
    Status(u16),
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
    /// The connection closed.
    Closed,
    /// Nothing within the bound.
    TimedOut,
}

impl H2Outcome {
    /// The request was refused (not served): a 4xx, a reset, a GOAWAY or a close.
    pub fn refused(self) -> bool {
        matches!(
            self,
            H2Outcome::Status(400..=499)
                | H2Outcome::Reset(_)
                | H2Outcome::GoAway(_)
                | H2Outcome::Closed
        )
    }
}

/// One HTTP/2 frame.
#[derive(Debug)]
pub struct Frame {
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream id.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// DATA.
pub const DATA: u8 = 0;
/// HEADERS.
pub const HEADERS: u8 = 1;
/// RST_STREAM.
pub const RST_STREAM: u8 = 3;
/// SETTINGS.
pub const SETTINGS: u8 = 4;
/// PING.
pub const PING: u8 = 6;
/// GOAWAY.
pub const GOAWAY: u8 = 7;
/// CONTINUATION.
pub const CONTINUATION: u8 = 9;
/// END_STREAM.
pub const END_STREAM: u8 = 0x1;
/// ACK (SETTINGS, PING).
pub const ACK: u8 = 0x1;
/// END_HEADERS.
pub const END_HEADERS: u8 = 0x4;

/// A frame: 9-byte head and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Preface plus an empty SETTINGS frame: what a client sends first.
pub fn h2_start() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out
}

/// HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block of literal fields without indexing (no Huffman): every name and value is on
/// the wire exactly as given, pseudo-headers included.
pub fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// A HEADERS frame with END_HEADERS (and END_STREAM when `end`).
pub fn headers(stream: u32, fields: &[(&str, &str)], end: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &hpack(fields))
}

/// A GET request's header fields for `authority` and `path`, plus `extra`.
pub fn get_fields<'a>(
    authority: &'a str,
    path: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", authority),
        (":path", path),
    ];
    f.extend_from_slice(extra);
    f
}

/// RST_STREAM with `code`.
pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// The `:status` of a response header block, when it is the first field (as servers send it):
/// an indexed static entry, or a literal with the `:status` name whose value may be Huffman
/// coded (digits only).
pub fn status_of(block: &[u8]) -> Option<u16> {
    let mut i = 0;
    // Skip dynamic table size updates.
    while i < block.len() && block[i] & 0xe0 == 0x20 {
        i += 1;
    }
    let b = *block.get(i)?;
    if b & 0x80 != 0 {
        return match b & 0x7f {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    let name_index = if b & 0xc0 == 0x40 { b & 0x3f } else { b & 0x0f };
    if name_index != 8 {
        return None;
    }
    let len_byte = *block.get(i + 1)?;
    let len = usize::from(len_byte & 0x7f);
    let value = block.get(i + 2..i + 2 + len)?;
    let text = if len_byte & 0x80 != 0 {
        huffman_digits(value)?
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    text.parse().ok()
}

/// Decodes a Huffman-coded string of decimal digits (RFC 7541 Appendix B: '0'-'2' are 5-bit
/// codes 0-2, '3'-'9' are 6-bit codes 0x19-0x1f).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |k| (b >> k) & 1))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i + 5 <= bits.len() {
        let five = bits[i..i + 5].iter().fold(0u8, |a, b| a << 1 | b);
        if five <= 2 {
            out.push(char::from(b'0' + five));
            i += 5;
            continue;
        }
        if i + 6 > bits.len() {
            break;
        }
        let six = bits[i..i + 6].iter().fold(0u8, |a, b| a << 1 | b);
        if (0x19..=0x1f).contains(&six) {
            out.push(char::from(b'3' + (six - 0x19)));
            i += 6;
        } else {
            break; // padding (all ones) or not a digit
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Secret of the `hs` provider of [`target_gateway`].
pub const SECRET: &str = "0123456789abcdef0123456789abcdef-attack-secret";

/// A valid token for `sub` from the `hs` provider of [`target_gateway`].
pub fn token(sub: &str) -> String {
    let now = super::unix_now();
    super::hs256(
        SECRET,
        &serde_json::json!({"iss": "https://attack.test", "aud": "portico", "sub": sub,
                            "exp": now + 600, "iat": now}),
    )
}

/// The gateway the attack tests aim at: an echo backend behind a public route `/echo` and a
/// JWT route `/secure` (forwarding `sub` as `x-user-id`), plus `extra` TOML (more routes,
/// `[limits]`, `[server]` keys via `server_extra`).
pub async fn target_gateway(
    backend: &super::Backend,
    server_extra: &str,
    extra: &str,
) -> super::TestGateway {
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
{server_extra}

[log]
access_log = false

[upstreams.echo]
endpoints = ["{backend}"]
timeout = "5s"

[auth.providers.hs]
issuer = "https://attack.test"
audiences = ["portico"]
algorithms = ["HS256"]
secret_file = "hs.secret"
forward_claims = {{ sub = "x-user-id" }}

[[routes]]
id = "secure"
match = {{ path_prefix = "/secure" }}
upstream = "echo"
auth = {{ provider = "hs" }}

[[routes]]
id = "echo"
match = {{ path_prefix = "/echo" }}
upstream = "echo"

{extra}
"#,
        backend = backend.addr
    );
    super::TestGateway::start_with_files(&cfg, &[("hs.secret", SECRET)]).await
}
