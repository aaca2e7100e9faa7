//! A fixed-response HTTP/1.1 backend for load tests: the same tiny answer to every request.
//!
//! It exists so that proxies are compared against a backend that costs next to nothing and
//! costs the same for every proxy: no routing, no allocation per request, one `write` per batch
//! of pipelined requests. One blocking thread per connection keeps the per-request work to a
//! `read` and a `write` syscall (load tests use tens of connections, not thousands).
//!
//! Usage: `portico-fixed-backend [--listen 127.0.0.1:0] [--body-bytes 64]`; prints
//! `listening on ADDR` once bound, then serves until killed.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

/// Largest request head accepted; larger heads get 431 and the connection is closed.
const MAX_HEAD: usize = 16 * 1024;

fn main() -> ExitCode {
    let mut listen = String::from("127.0.0.1:0");
    let mut body_bytes = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--listen", Some(v)) => listen = v,
            ("--body-bytes", Some(v)) => match v.parse() {
                Ok(n) => body_bytes = n,
                Err(_) => return usage(&format!("--body-bytes wants a number, got {v:?}")),
            },
            (other, _) => return usage(&format!("unknown or incomplete argument {other:?}")),
        }
    }
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("portico-fixed-backend: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map_or(listen, |a| a.to_string());
    println!("listening on {addr}");
    let _ = io::stdout().flush();
    let response: &'static [u8] = Box::leak(fixed_response(body_bytes).into_boxed_slice());
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = serve(stream, response);
            });
        if let Err(e) = spawned {
            eprintln!("portico-fixed-backend: cannot start a connection thread: {e}");
        }
    }
    ExitCode::SUCCESS
}

fn usage(why: &str) -> ExitCode {
    eprintln!("portico-fixed-backend: {why}");
    eprintln!("usage: portico-fixed-backend [--listen 127.0.0.1:0] [--body-bytes 64]");
    ExitCode::from(2)
}

/// The one answer: a JSON body of exactly `body_bytes` bytes (at least `{}`).
fn fixed_response(body_bytes: usize) -> Vec<u8> {
    let mut body = String::from("{\"ok\":true,\"pad\":\"");
    let closing = "\"}";
    while body.len() + closing.len() < body_bytes {
        body.push('x');
    }
    body.push_str(closing);
    if body_bytes < body.len() {
        body = String::from("{}");
    }
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// What one complete request head in the buffer asks of us.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A request whose head ends at `head_len`, followed by `body_len` body bytes.
    Request { head_len: usize, body_len: usize },
    /// A request we do not serve (chunked upload, bad length, huge head): answer and close.
    Refuse(&'static [u8]),
}

const REFUSE_CHUNKED: &[u8] =
    b"HTTP/1.1 501 Not Implemented\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
const REFUSE_BAD: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
const REFUSE_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// Parses the head at the start of `buf`; `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Option<Head> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (buf.len() > MAX_HEAD).then_some(Head::Refuse(REFUSE_LARGE));
    };
    let head_len = end + 4;
    let mut body_len = 0usize;
    for line in buf[..end].split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            match parsed {
                Some(n) => body_len = n,
                None => return Some(Head::Refuse(REFUSE_BAD)),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Some(Head::Refuse(REFUSE_CHUNKED));
        }
    }
    Some(Head::Request { head_len, body_len })
}

/// Serves one connection: every complete request in a read gets the fixed response, written
/// together in one `write` (pipelined requests are answered in order).
fn serve(mut stream: TcpStream, response: &[u8]) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0usize;
    let mut out = Vec::with_capacity(response.len() * 4);
    // Body bytes of the current request still to be read and dropped.
    let mut skip = 0usize;
    loop {
        let n = stream.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut start = 0usize;
        loop {
            if skip > 0 {
                let dropped = skip.min(filled - start);
                skip -= dropped;
                start += dropped;
                if skip > 0 {
                    break;
                }
            }
            match parse_head(&buf[start..filled]) {
                None => break,
                Some(Head::Refuse(answer)) => {
                    out.extend_from_slice(answer);
                    stream.write_all(&out)?;
                    return Ok(());
                }
                Some(Head::Request { head_len, body_len }) => {
                    out.extend_from_slice(response);
                    start += head_len;
                    skip = body_len;
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_has_the_asked_body_size() {
        let r = fixed_response(64);
        let text = String::from_utf8(r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.len(), 64);
        assert!(head.contains("content-length: 64"));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
        let tiny = String::from_utf8(fixed_response(0)).unwrap();
        assert!(tiny.ends_with("\r\n\r\n{}"));
    }

    #[test]
    fn heads_parse() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nhost: x\r\n"), None);
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET"),
            Some(Head::Request {
                head_len: 27,
                body_len: 0
            })
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
            Some(Head::Request {
                head_len: 38,
                body_len: 5
            })
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\ncontent-length: x\r\n\r\n"),
            Some(Head::Refuse(REFUSE_BAD))
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"),
            Some(Head::Refuse(REFUSE_CHUNKED))
        );
        assert_eq!(
            parse_head(&vec![b'a'; MAX_HEAD + 1]),
            Some(Head::Refuse(REFUSE_LARGE))
        );
    }
}
