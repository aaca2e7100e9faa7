//! hyper answers a request head it cannot parse by itself (400, 414 or 431 with an empty body,
//! before any handler runs). These answers are recognised on their way out and replaced by the
//! gateway's problem+json with an `x-request-id`, like every other error it makes.

use http::StatusCode;

use crate::error::GatewayError;
use crate::filter::headers;

/// hyper's bare answer is a status line and at most these fields; the gateway's own answers
/// always carry `x-request-id`, so they never match.
const BARE_FIELDS: [&[u8]; 3] = [b"content-length", b"date", b"connection"];

/// The problem+json answer replacing `written`, when `written` is exactly one of hyper's bare
/// parse-error answers; `None` (after a two-byte look) for everything else.
pub fn rewrite(written: &[u8]) -> Option<Vec<u8>> {
    if written.len() > 512 || !written.starts_with(b"HTTP/1.1 4") || !written.ends_with(b"\r\n\r\n")
    {
        return None;
    }
    let err = match &written[9..12] {
        b"400" => GatewayError::BadRequest("The request head could not be parsed."),
        b"414" => GatewayError::UriTooLong,
        b"431" => GatewayError::HeadTooLarge,
        _ => return None,
    };
    let head = &written[..written.len() - 4];
    let mut date = None;
    for line in head.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if !BARE_FIELDS.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") && value != b"0" {
            return None;
        }
        if name.eq_ignore_ascii_case(b"date") {
            date = Some(value);
        }
    }
    let id = headers::new_request_id();
    let id = id.to_str().unwrap_or("-");
    tracing::debug!(request_id = id, status = %err.status(), "unparsable request head");
    let body = err.problem_json(id).to_string();
    let status: StatusCode = err.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nx-request-id: {id}\r\nconnection: close\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes();
    if let Some(date) = date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: Option<Vec<u8>>) -> String {
        String::from_utf8(b.expect("rewritten")).unwrap()
    }

    #[test]
    fn hypers_431_becomes_problem_json() {
        let out = text(rewrite(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 02:00:00 GMT\r\n\r\n",
        ));
        assert!(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(out.contains("content-type: application/problem+json\r\n"));
        assert!(out.contains("x-request-id: "));
        assert!(out.contains("date: Wed, 02 Dec 2026 02:00:00 GMT\r\n"));
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            json["type"],
            "https://portico.dev/problems/header-too-large"
        );
        assert_eq!(json["status"], 431);
    }

    #[test]
    fn a_bad_head_is_bad_request() {
        let out = text(rewrite(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
        ));
        assert!(out.contains("\"type\":\"https://portico.dev/problems/bad-request\""));
    }

    #[test]
    fn the_gateways_own_answers_pass_untouched() {
        for own in [
            &b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nx-request-id: a\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\nbody",
        ] {
            assert!(rewrite(own).is_none(), "{}", String::from_utf8_lossy(own));
        }
    }
}
