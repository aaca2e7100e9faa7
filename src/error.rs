//! `GatewayError`: every way a request can fail, and the one place each maps to an HTTP answer.

use std::time::Duration;

use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::body::Body;

mod grpc;

/// Everything that can end a request early. Client-facing text never carries internal details
/// (addresses, upstream names, parser messages); those go to the logs via `Display`.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route matches the host and path.
    #[error("no route matches")]
    NoRoute,
    /// A route matches the path but not the method.
    #[error("method not allowed (allowed: {allow:?})")]
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: HeaderValue,
    },
    /// The request is malformed in a way hyper let through (e.g. a dot-segment path).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The client's request body could not be read (malformed chunked framing, the client went
    /// away): 400, and never counted against the upstream.
    #[error("client request body failed: {reason}")]
    ClientBody {
        /// Underlying error (logs only).
        reason: String,
    },
    /// The request body is larger than `limits.max_body_bytes`.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// No endpoint of the upstream accepted a connection.
    #[error("upstream `{upstream}` unreachable: {reason}")]
    UpstreamUnreachable {
        /// Upstream name (logs only).
        upstream: std::sync::Arc<str>,
        /// Underlying error (logs only).
        reason: String,
    },
    /// The upstream did not send a response head in time.
    #[error("upstream `{upstream}` timed out after {timeout:?}")]
    UpstreamTimeout {
        /// Upstream name (logs only).
        upstream: std::sync::Arc<str>,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The upstream broke the exchange (reset, invalid response).
    #[error("upstream `{upstream}` failed: {reason}")]
    UpstreamProtocol {
        /// Upstream name (logs only).
        upstream: std::sync::Arc<str>,
        /// Underlying error (logs only).
        reason: String,
    },
    /// No endpoint of the upstream is usable (failing health checks or ejected) and panic
    /// mode is off (`panic_threshold = 0`).
    #[error("upstream `{upstream}` has no healthy endpoint")]
    NoHealthyUpstream {
        /// Upstream name (logs only).
        upstream: std::sync::Arc<str>,
    },
    /// The upstream's circuit is full (`[upstreams.NAME.circuit]`): refused at once, 503.
    #[error("upstream `{upstream}` overloaded")]
    Overloaded {
        /// Upstream name (logs only).
        upstream: std::sync::Arc<str>,
    },
    /// The upstream's endpoint set is empty now (every discovered instance left).
    #[error("upstream {upstream} has no endpoints")]
    NoEndpoints {
        /// Upstream name (logs only).
        upstream: std::sync::Arc<str>,
    },
    /// The gateway is draining for shutdown.
    #[error("shutting down")]
    ShuttingDown,
    /// The route requires a verified client certificate and the connection has none.
    #[error("client certificate required")]
    ClientCertRequired,
    /// No acceptable bearer token: 401 with `WWW-Authenticate`.
    #[error("unauthorized: {detail}")]
    Unauthorized {
        /// The `WWW-Authenticate` challenge.
        challenge: HeaderValue,
        /// Short reason (never the token).
        detail: &'static str,
    },
    /// A valid token without a required scope or claim: 403.
    #[error("forbidden: {detail}")]
    Forbidden {
        /// The `WWW-Authenticate` challenge (`error="insufficient_scope"`).
        challenge: HeaderValue,
        /// Short reason.
        detail: &'static str,
        /// The scopes the route requires, when a scope is what the token lacks.
        scope: Option<Box<str>>,
    },
    /// The client address did not pass the route's IP list: 403.
    #[error("client address refused by IP list `{list}`")]
    IpDenied {
        /// List name (logs only).
        list: std::sync::Arc<str>,
    },
    /// A CORS preflight asked for an origin, method or header the policy does not allow: 403.
    #[error("CORS preflight refused: {detail}")]
    CorsRejected {
        /// Short reason.
        detail: &'static str,
    },
    /// A rate-limit policy refused the request: 429.
    #[error("rate limited by policy `{policy}`")]
    RateLimited {
        /// Policy name (logs only).
        policy: std::sync::Arc<str>,
        /// Whole seconds until a retry can pass (at least 1).
        retry_after_secs: u64,
        /// `RateLimit-Policy` and `RateLimit` fields.
        headers: RateLimitHeaders,
    },
    /// A cluster-scoped rate-limit policy with `on_store_error = "deny"` could not reach its
    /// store: 503.
    #[error("rate-limit store unavailable for policy `{policy}`")]
    RateLimitUnavailable {
        /// Policy name (logs only).
        policy: std::sync::Arc<str>,
        /// Whole seconds until the store is tried again (at least 1).
        retry_after_secs: u64,
    },
    /// `x-client` named no BFF profile, there is no default profile, and no route matches.
    #[error("unknown BFF client")]
    BffUnknownClient,
    /// A required BFF part failed (error status, connection, not JSON, too large, ...).
    #[error("required part `{part}` failed: {reason}")]
    BffPartFailed {
        /// Part name (from the profile; shown to the client).
        part: std::sync::Arc<str>,
        /// Reason token, as in `portico-partial`.
        reason: &'static str,
    },
    /// A required BFF part did not answer within its timeout or the response budget.
    #[error("required part `{part}` timed out")]
    BffPartTimeout {
        /// Part name.
        part: std::sync::Arc<str>,
    },
    /// The route's fault injection aborted the request (`fault.abort_status`).
    #[error("fault injected: {status}")]
    FaultInjected {
        /// The configured (or requested) status.
        status: StatusCode,
    },
    /// A required BFF part needs a value the request did not carry.
    #[error("required part `{part}` lacks {input}")]
    BffMissingInput {
        /// Part name.
        part: std::sync::Arc<str>,
        /// The placeholder, e.g. `{query.user}`.
        input: Box<str>,
    },
    /// A saga step failed; the finished steps were compensated (`done`) or not (`stuck`).
    #[error("saga {saga}: step `{step}` failed ({reason}); compensation {compensation}")]
    SagaFailed {
        /// Saga id (shown to the client, for the admin API).
        saga: Box<str>,
        /// The step that failed.
        step: std::sync::Arc<str>,
        /// Reason token (`bad-status`, `timeout`, `unreachable`, `missing-input`, ...).
        reason: &'static str,
        /// 409 (the service refused), 502, 504 (timeout or budget), 400 (missing input).
        status: StatusCode,
        /// `done` or `stuck`.
        compensation: &'static str,
    },
    /// The route already has `max_tunnels` upgraded connections open: 503.
    #[error("tunnel limit reached")]
    TunnelLimit,
    /// The request head is larger than `limits.max_header_bytes` or has more than
    /// `limits.max_headers` fields (hyper refuses it before any handler runs).
    #[error("request head too large")]
    HeadTooLarge,
    /// The request target is longer than hyper accepts.
    #[error("request URI too long")]
    UriTooLong,
    /// A script hook failed (error, budget, memory, bad value): 500, details in the log only.
    #[error("script `{script}` failed ({kind}): {message}")]
    ScriptError {
        /// Script name.
        script: std::sync::Arc<str>,
        /// `portico_script_errors_total` kind.
        kind: &'static str,
        /// The Lua message with script:line (logs only).
        message: String,
    },
}

/// The pieces of an RFC 9457 problem for one error.
struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
}

impl GatewayError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.problem().status
    }

    /// Stable problem `type` URI.
    pub fn problem_type(&self) -> String {
        format!("https://portico.dev/problems/{}", self.problem().slug)
    }

    /// The only error → HTTP mapping: exhaustive, no catch-all.
    fn problem(&self) -> Problem {
        use GatewayError as E;
        let p = |status, slug, title, detail: &str| Problem {
            status,
            slug,
            title,
            detail: detail.to_string(),
        };
        match self {
            E::NoRoute => p(
                StatusCode::NOT_FOUND,
                "no-route",
                "Not Found",
                "No route matches this request.",
            ),
            E::MethodNotAllowed { .. } => p(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method Not Allowed",
                "This path does not accept this method; see the Allow header.",
            ),
            E::BadRequest(why) => p(StatusCode::BAD_REQUEST, "bad-request", "Bad Request", why),
            E::ClientBody { .. } => p(
                StatusCode::BAD_REQUEST,
                "bad-request-body",
                "Bad Request",
                "The request body could not be read (malformed chunked framing or an incomplete body).",
            ),
            E::PayloadTooLarge { limit } => Problem {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                slug: "payload-too-large",
                title: "Content Too Large",
                detail: format!("The request body is larger than {limit} bytes."),
            },
            E::UpstreamUnreachable { .. } => p(
                StatusCode::BAD_GATEWAY,
                "upstream-unreachable",
                "Bad Gateway",
                "The upstream service could not be reached.",
            ),
            E::UpstreamTimeout { .. } => p(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream-timeout",
                "Gateway Timeout",
                "The upstream service did not answer in time.",
            ),
            E::UpstreamProtocol { .. } => p(
                StatusCode::BAD_GATEWAY,
                "upstream-error",
                "Bad Gateway",
                "The upstream service sent an invalid response.",
            ),
            E::NoHealthyUpstream { .. } => p(
                StatusCode::SERVICE_UNAVAILABLE,
                "no-healthy-upstream",
                "Service Unavailable",
                "No healthy instance of the upstream service is available.",
            ),
            E::Overloaded { .. } => p(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Service Unavailable",
                "The upstream service has too many requests in flight; retry later.",
            ),
            E::NoEndpoints { .. } => p(
                StatusCode::SERVICE_UNAVAILABLE,
                "no-endpoints",
                "Service Unavailable",
                "The upstream service has no registered instances right now.",
            ),
            E::ShuttingDown => p(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                "Service Unavailable",
                "The gateway is shutting down; retry on another instance.",
            ),
            E::ClientCertRequired => p(
                StatusCode::FORBIDDEN,
                "client-certificate-required",
                "Forbidden",
                "This route requires a verified TLS client certificate.",
            ),
            E::Unauthorized { detail, .. } => p(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                detail,
            ),
            E::Forbidden {
                scope: Some(scope), ..
            } => Problem {
                status: StatusCode::FORBIDDEN,
                slug: "forbidden",
                title: "Forbidden",
                detail: format!("The token lacks a scope this route requires: {scope}."),
            },
            E::Forbidden {
                detail,
                scope: None,
                ..
            } => p(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail),
            E::IpDenied { .. } => p(
                StatusCode::FORBIDDEN,
                "ip-denied",
                "Forbidden",
                "Requests from this address are not allowed here.",
            ),
            E::CorsRejected { detail } => {
                p(StatusCode::FORBIDDEN, "cors-rejected", "Forbidden", detail)
            }
            E::RateLimited {
                retry_after_secs, ..
            } => Problem {
                status: StatusCode::TOO_MANY_REQUESTS,
                slug: "rate-limited",
                title: "Too Many Requests",
                detail: format!("Too many requests; retry in {retry_after_secs} s."),
            },
            E::RateLimitUnavailable { .. } => p(
                StatusCode::SERVICE_UNAVAILABLE,
                "rate-limit-unavailable",
                "Service Unavailable",
                "The rate limit of this route cannot be checked right now; retry later.",
            ),
            E::BffUnknownClient => p(
                StatusCode::NOT_FOUND,
                "unknown-client",
                "Not Found",
                "No client profile serves this request; check the x-client header.",
            ),
            E::BffPartFailed { part, reason } => Problem {
                status: StatusCode::BAD_GATEWAY,
                slug: "bff-part-failed",
                title: "Bad Gateway",
                detail: format!("The required part `{part}` failed ({reason})."),
            },
            E::BffPartTimeout { part } => Problem {
                status: StatusCode::GATEWAY_TIMEOUT,
                slug: "bff-deadline",
                title: "Gateway Timeout",
                detail: format!(
                    "The required part `{part}` did not answer within the deadline budget."
                ),
            },
            E::FaultInjected { status } => Problem {
                status: *status,
                slug: "fault-injected",
                title: status.canonical_reason().unwrap_or("Injected Fault"),
                detail: "The gateway injected this failure (route fault injection).".into(),
            },
            E::BffMissingInput { part, input } => Problem {
                status: StatusCode::BAD_REQUEST,
                slug: "bff-missing-input",
                title: "Bad Request",
                detail: format!("The part `{part}` needs {input}, which this request lacks."),
            },
            E::SagaFailed {
                step,
                reason,
                status,
                compensation,
                ..
            } => Problem {
                status: *status,
                slug: "saga-failed",
                title: status.canonical_reason().unwrap_or("Saga Failed"),
                detail: format!(
                    "The saga step `{step}` failed ({reason}); compensation of the finished steps: {compensation}."
                ),
            },
            E::HeadTooLarge => p(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header-too-large",
                "Request Header Fields Too Large",
                "The request head has more bytes or fields than this gateway accepts.",
            ),
            E::UriTooLong => p(
                StatusCode::URI_TOO_LONG,
                "uri-too-long",
                "URI Too Long",
                "The request target is longer than this gateway accepts.",
            ),
            E::TunnelLimit => p(
                StatusCode::SERVICE_UNAVAILABLE,
                "tunnel-limit",
                "Service Unavailable",
                "This route has as many upgraded connections open as it allows; retry later.",
            ),
            E::ScriptError { .. } => p(
                StatusCode::INTERNAL_SERVER_ERROR,
                "script-error",
                "Internal Server Error",
                "A gateway script failed while handling this request.",
            ),
        }
    }

    /// The problem+json document for this error (RFC 9457 members plus `request_id`).
    pub fn problem_json(&self, request_id: &str) -> serde_json::Value {
        let p = self.problem();
        let mut body = serde_json::json!({
            "type": format!("https://portico.dev/problems/{}", p.slug),
            "title": p.title,
            "status": p.status.as_u16(),
            "detail": p.detail,
            "request_id": request_id,
        });
        if let GatewayError::SagaFailed {
            saga,
            step,
            compensation,
            ..
        } = self
        {
            body["failed_step"] = (**step).into();
            body["compensation"] = (*compensation).into();
            body["saga_id"] = (**saga).into();
        }
        body
    }

    /// The `application/problem+json` response for this error.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let body = self.problem_json(request_id);
        let p = self.problem();
        let mut resp = Response::new(Body::full(body.to_string()));
        *resp.status_mut() = p.status;
        let headers = resp.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            GatewayError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, allow);
            }
            GatewayError::ShuttingDown => {
                headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            GatewayError::Overloaded { .. } => {
                headers.insert(&OVERLOADED, HeaderValue::from_static("upstream"));
            }
            GatewayError::Unauthorized { challenge, .. }
            | GatewayError::Forbidden { challenge, .. } => {
                headers.insert(http::header::WWW_AUTHENTICATE, challenge);
            }
            GatewayError::RateLimited {
                retry_after_secs,
                headers: fields,
                ..
            } => {
                headers.insert(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs),
                );
                fields.apply(headers);
            }
            GatewayError::RateLimitUnavailable {
                retry_after_secs, ..
            } => {
                headers.insert(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs),
                );
            }
            GatewayError::NoRoute
            | GatewayError::BadRequest(_)
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::ClientBody { .. }
            | GatewayError::UpstreamUnreachable { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamProtocol { .. }
            | GatewayError::NoHealthyUpstream { .. }
            | GatewayError::NoEndpoints { .. }
            | GatewayError::ClientCertRequired
            | GatewayError::IpDenied { .. }
            | GatewayError::CorsRejected { .. }
            | GatewayError::BffUnknownClient
            | GatewayError::BffPartFailed { .. }
            | GatewayError::BffPartTimeout { .. }
            | GatewayError::BffMissingInput { .. }
            | GatewayError::FaultInjected { .. }
            | GatewayError::TunnelLimit
            | GatewayError::HeadTooLarge
            | GatewayError::UriTooLong => {}
            GatewayError::ScriptError { .. } | GatewayError::SagaFailed { .. } => {}
        }
        resp
    }
}

/// The two RateLimit fields for one policy decision.
#[derive(Debug, Clone)]
pub struct RateLimitHeaders {
    /// `RateLimit-Policy`.
    pub policy: HeaderValue,
    /// `RateLimit`.
    pub state: HeaderValue,
}

/// `RateLimit-Policy`.
pub static RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
/// `portico-overloaded`: which limit refused the request (`upstream`).
pub static OVERLOADED: http::HeaderName = http::HeaderName::from_static("portico-overloaded");
/// `RateLimit`.
pub static RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

impl RateLimitHeaders {
    /// Adds both fields to a response.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        headers.insert(&RATELIMIT_POLICY, self.policy.clone());
        headers.insert(&RATELIMIT, self.state.clone());
    }
}
