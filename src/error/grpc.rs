//! The gRPC face of `GatewayError`: trailers-only answers and the HTTP → gRPC status map.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::GatewayError;
use crate::body::Body;

impl GatewayError {
    /// The gRPC status code for this error (gRPC's HTTP-to-status mapping, made finer where
    /// the gateway knows more): the one error → gRPC map, beside the HTTP one.
    pub fn grpc_status(&self) -> u32 {
        grpc_code(self.status())
    }

    /// The trailers-only gRPC answer for this error (a request with `content-type:
    /// application/grpc*`): HTTP 200, `grpc-status` and a percent-encoded `grpc-message` in
    /// the head, no body; never problem+json.
    pub fn into_grpc_response(self) -> Response<Body> {
        let p = self.problem();
        let mut resp = Response::new(Body::Empty);
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(self.grpc_status()));
        let message = grpc_message(&p.detail);
        if let Ok(v) = HeaderValue::from_str(&message) {
            headers.insert("grpc-message", v);
        }
        if let GatewayError::RateLimited {
            retry_after_secs, ..
        } = self
        {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs),
            );
        }
        resp
    }
}

/// gRPC status for an HTTP status the gateway answers with (gRPC's "HTTP to gRPC status"
/// table: 401→16 UNAUTHENTICATED, 403→7 PERMISSION_DENIED, 404→12 UNIMPLEMENTED, 502/503→14
/// UNAVAILABLE; 504→4 DEADLINE_EXCEEDED and 429/413→8 RESOURCE_EXHAUSTED where the gateway
/// knows the cause; 400→13 INTERNAL as the table says; anything else 2 UNKNOWN).
pub fn grpc_code(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 | 405 => 12,
        413 | 429 => 8,
        500 => 13,
        502 | 503 => 14,
        504 => 4,
        _ => 2,
    }
}

/// `grpc-message` text: percent-encoded UTF-8, as the gRPC HTTP/2 spec asks (bytes outside
/// printable ASCII and `%` itself).
pub fn grpc_message(text: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');
    percent_encoding::utf8_percent_encode(text, SET).to_string()
}

#[cfg(test)]
mod grpc_tests {
    use super::*;

    #[test]
    fn grpc_answers_are_trailers_only() {
        let resp = GatewayError::NoRoute.into_grpc_response();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["grpc-status"], "12");
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert!(
            resp.headers()["grpc-message"]
                .to_str()
                .unwrap()
                .contains("No route")
        );
    }

    #[test]
    fn grpc_codes_follow_the_mapping() {
        let code = |s: u16| grpc_code(StatusCode::from_u16(s).unwrap());
        assert_eq!(
            [401, 403, 404, 429, 502, 503, 504, 418].map(code),
            [16, 7, 12, 8, 14, 14, 4, 2]
        );
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_message("50% done\n"), "50%25 done%0A");
        assert_eq!(grpc_message("café"), "caf%C3%A9");
    }
}
