//! gRPC awareness on the request path: which requests are gRPC, and their `grpc-timeout`
//! deadline (the error answers themselves are mapped in `error`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};

use crate::body::{Body, BoxError};

/// `grpc-timeout`.
pub static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Whether a request is gRPC: its content-type is `application/grpc` or `application/grpc+…`
/// (`application/grpc-web…` is not: it is HTTP/1-friendly and answered like HTTP). Retries
/// use it: a gRPC call may be streaming, and a stream is never retried.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let b = v.as_bytes();
        b.len() >= 16
            && b[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(b.get(16), None | Some(b'+' | b';'))
    })
}

/// Parses a `grpc-timeout` value: 1 to 8 digits and a unit (`H M S m u n`).
pub fn parse_timeout(value: &HeaderValue) -> Option<Duration> {
    let b = value.as_bytes();
    let (digits, unit) = b.split_at(b.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit[0] {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A `grpc-timeout` value for `left`, in the finest unit that fits 8 digits.
pub fn format_timeout(left: Duration) -> HeaderValue {
    let micros = left.as_micros();
    let text = if micros < 100_000_000 {
        format!("{micros}u")
    } else if left.as_millis() < 100_000_000 {
        format!("{}m", left.as_millis())
    } else {
        format!("{}S", left.as_secs().min(99_999_999))
    };
    HeaderValue::from_str(&text).expect("digits and a unit are a valid header value")
}

/// The time a gRPC request may take: the route's `timeout`, or less when the client's
/// `grpc-timeout` says so; the header is rewritten to what is left (forwarded upstream).
pub fn deadline(headers: &mut HeaderMap, route_timeout: Duration) -> Duration {
    let Some(asked) = headers.get(&GRPC_TIMEOUT).and_then(parse_timeout) else {
        return route_timeout;
    };
    let left = asked.min(route_timeout);
    headers.insert(&GRPC_TIMEOUT, format_timeout(left));
    left
}

/// A gRPC response body that ends at the call's deadline: a stream still running then is cut
/// (the upstream stream is reset by dropping it) and closed with trailers `grpc-status: 4`
/// (DEADLINE_EXCEEDED), so the client sees the status the deadline means, not a broken stream.
pub fn bounded_by(body: Body, deadline: tokio::time::Instant) -> Body {
    let bounded = Bounded {
        inner: Some(body),
        timer: Box::pin(tokio::time::sleep_until(deadline)),
        trailers_seen: false,
    };
    Body::Boxed(http_body_util::BodyExt::boxed_unsync(bounded))
}

struct Bounded {
    inner: Option<Body>,
    timer: Pin<Box<tokio::time::Sleep>>,
    trailers_seen: bool,
}

impl http_body::Body for Bounded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            match &frame {
                Some(Ok(f)) if f.is_trailers() => this.trailers_seen = true,
                Some(Ok(_)) => {}
                None | Some(Err(_)) => this.inner = None,
            }
            return Poll::Ready(frame);
        }
        if this.trailers_seen || this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.inner = None;
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("4"));
        trailers.insert(
            "grpc-message",
            HeaderValue::from_static("deadline%20exceeded%20at%20the%20gateway"),
        );
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
        h
    }

    #[tokio::test]
    async fn a_stream_past_its_deadline_ends_with_status_4() {
        use http_body_util::BodyExt;
        let (mut tx, rx) = futures_channel_like();
        tx.push(Frame::data(Bytes::from_static(b"first")));
        let stream = http_body_util::StreamBody::new(rx);
        let body = Body::Boxed(stream.boxed_unsync());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let mut bounded = bounded_by(body, deadline);
        let first = bounded.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "first");
        let last = bounded.frame().await.unwrap().unwrap();
        let trailers = last.into_trailers().unwrap();
        assert_eq!(trailers["grpc-status"], "4");
        assert!(bounded.frame().await.is_none());
        assert!(tokio::time::Instant::now() >= deadline);
        drop(tx);
    }

    /// A body stream fed by hand that never ends on its own.
    fn futures_channel_like() -> (
        Feed,
        impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|f| (Ok(f), rx))
        });
        (Feed(tx), stream)
    }

    struct Feed(tokio::sync::mpsc::UnboundedSender<Frame<Bytes>>);

    impl Feed {
        fn push(&mut self, f: Frame<Bytes>) {
            self.0.send(f).unwrap();
        }
    }

    #[test]
    fn grpc_requests_by_content_type() {
        assert!(is_grpc(&ct("application/grpc")));
        assert!(is_grpc(&ct("application/grpc+proto")));
        assert!(is_grpc(&ct("Application/GRPC")));
        assert!(!is_grpc(&ct("application/grpc-web")));
        assert!(!is_grpc(&ct("application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn timeouts_parse_and_format() {
        let p = |v: &'static str| parse_timeout(&HeaderValue::from_static(v));
        assert_eq!(p("100m"), Some(Duration::from_millis(100)));
        assert_eq!(p("2S"), Some(Duration::from_secs(2)));
        assert_eq!(p("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(p("5n"), Some(Duration::from_nanos(5)));
        assert_eq!(p("123456789m"), None);
        assert_eq!(p("m"), None);
        assert_eq!(p("10x"), None);
        assert_eq!(format_timeout(Duration::from_millis(100)), "100000u");
        assert_eq!(format_timeout(Duration::from_secs(3600)), "3600000m");
    }

    #[test]
    fn deadline_is_the_smaller_and_is_forwarded() {
        let mut h = HeaderMap::new();
        h.insert(&GRPC_TIMEOUT, HeaderValue::from_static("100m"));
        assert_eq!(
            deadline(&mut h, Duration::from_secs(30)),
            Duration::from_millis(100)
        );
        assert_eq!(h[&GRPC_TIMEOUT], "100000u");
        let mut h = HeaderMap::new();
        h.insert(&GRPC_TIMEOUT, HeaderValue::from_static("10S"));
        assert_eq!(
            deadline(&mut h, Duration::from_secs(2)),
            Duration::from_secs(2)
        );
        assert_eq!(h[&GRPC_TIMEOUT], "2000000u");
        assert_eq!(
            deadline(&mut HeaderMap::new(), Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }
}
