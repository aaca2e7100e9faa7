//! Distributed tracing: W3C Trace Context in and out, and OpenTelemetry spans exported over
//! OTLP/HTTP. Absent `[tracing]`, the request path does no trace work (the upstream send loop
//! finds no scope: one task-local lookup per attempt).
//!
//! The handler starts a [`ServerSpan`] and runs the request inside its [`Scope`] (a task-local,
//! so the upstream send loop and BFF part calls find their parent without every signature in
//! between carrying it). Each upstream attempt gets a new span id sent on in `traceparent`.

pub mod compile;
pub mod context;
mod export;
pub mod otlp;
mod span;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_util::future::Either;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::task::futures::TaskLocalFuture;

pub use span::{Attr, Kind};

/// `traceparent` (W3C Trace Context).
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate` (W3C Trace Context).
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `[tracing]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// Where spans are POSTed (`http(s)://HOST:PORT/v1/traces`); `None`: propagate only.
    pub otlp_endpoint: Option<http::Uri>,
    /// Share of new traces sampled, 0.0..=1.0 (a caller's decision is kept).
    pub sample_ratio: f64,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Finished spans waiting for export; more are dropped and counted.
    pub queue_size: usize,
    /// Most spans in one export request.
    pub batch_size: usize,
    /// Longest a finished span waits before its batch is sent.
    pub flush_interval: Duration,
    /// Time one export request may take.
    pub export_timeout: Duration,
}

/// The tracing runtime: settings and the export queue (kept across reloads while the settings
/// do not change).
#[derive(Debug)]
pub struct Tracer {
    /// What it was compiled from.
    pub settings: TracingSettings,
    queue: Option<export::Queue>,
}

/// What spans started inside a request hang under: the trace, the parent span and whether the
/// trace is sampled.
#[derive(Debug, Clone)]
pub struct Scope {
    tracer: Arc<Tracer>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    /// The sampled flag sent on (the caller's, or this gateway's decision).
    sampled: bool,
    /// Spans are recorded and exported: sampled, and an endpoint is configured.
    recording: bool,
    tracestate: Option<HeaderValue>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// The SERVER span of one request, finished by the handler.
#[derive(Debug)]
pub struct ServerSpan {
    scope: Scope,
    parent: Option<[u8; 8]>,
    start: SystemTime,
}

impl Tracer {
    /// Starts the server span for a request with these headers: a valid `traceparent`
    /// continues its trace (and its sampling decision), anything else starts a new trace
    /// sampled with probability `sample_ratio`.
    pub fn server(self: &Arc<Self>, headers: &HeaderMap) -> ServerSpan {
        let parent = headers.get(&TRACEPARENT).and_then(context::parse);
        let (trace_id, sampled) = match parent {
            Some(p) => (p.trace_id, p.sampled),
            None => {
                let id = context::new_trace_id();
                (id, self.samples(&id))
            }
        };
        ServerSpan {
            scope: Scope {
                tracer: self.clone(),
                trace_id,
                span_id: context::new_span_id(),
                sampled,
                recording: sampled && self.queue.is_some(),
                tracestate: context::tracestate(headers.get(&TRACESTATE)),
            },
            parent: parent.map(|p| p.span_id),
            start: SystemTime::now(),
        }
    }

    /// TraceIdRatioBased: the low 56 bits of a random trace id against the ratio, so every
    /// gateway with the same ratio agrees on a trace.
    fn samples(&self, trace_id: &[u8; 16]) -> bool {
        let r = self.settings.sample_ratio;
        if r >= 1.0 {
            return true;
        }
        let mut low = [0u8; 8];
        low[1..].copy_from_slice(&trace_id[9..]);
        (u64::from_be_bytes(low) as f64) < r * (1u64 << 56) as f64
    }
}

impl ServerSpan {
    /// The trace id in hex (for the access log).
    pub fn trace_id(&self) -> String {
        context::hex(&self.scope.trace_id)
    }

    /// The scope the request runs in.
    pub fn scope(&self) -> Scope {
        self.scope.clone()
    }

    /// Whether attributes are worth collecting (the span is exported).
    pub fn recording(&self) -> bool {
        self.scope.recording
    }

    /// Ends the span: `name` is "{method} {route id}"; `error` is the problem slug of a failed
    /// request.
    pub fn finish(self, name: String, attrs: Vec<Attr>, error: Option<String>) {
        let s = &self.scope;
        if !s.recording {
            return;
        }
        s.tracer.push(span::Finished {
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent: self.parent,
            tracestate: s.tracestate.clone(),
            name,
            kind: Kind::Server,
            start: self.start,
            end: SystemTime::now(),
            attrs,
            error,
        });
    }
}

impl Tracer {
    fn push(&self, span: span::Finished) {
        if let Some(q) = &self.queue {
            q.push(span);
        }
    }
}

/// Runs `fut` with `scope` as the parent of the spans it starts. A plain function, not an
/// `async fn`: an async wrapper would hold `fut` twice (its argument and the awaited copy),
/// doubling the size of every request's future.
pub fn in_scope<F: Future>(scope: Scope, fut: F) -> TaskLocalFuture<Scope, F> {
    SCOPE.scope(scope, fut)
}

/// The current request's scope, for work it spawns onto another task (a mirror copy).
pub fn current() -> Option<Scope> {
    SCOPE.try_with(Scope::clone).ok()
}

/// Runs `fut` in `scope` when there is one (no larger than `fut`, as [`in_scope`]).
pub fn maybe_in_scope<F: Future>(
    scope: Option<Scope>,
    fut: F,
) -> Either<TaskLocalFuture<Scope, F>, F> {
    match scope {
        Some(s) => Either::Left(SCOPE.scope(s, fut)),
        None => Either::Right(fut),
    }
}

/// One upstream attempt: its CLIENT span, started by [`attempt`].
#[derive(Debug)]
pub struct Attempt {
    scope: Scope,
    span_id: [u8; 8],
    start: SystemTime,
}

/// Starts an upstream attempt inside the current request's scope (none outside one): writes
/// `traceparent` with a new span id (and the caller's `tracestate`) into `headers`, and returns
/// the span to finish when the trace is sampled.
#[inline]
pub fn attempt(headers: &mut HeaderMap) -> Option<Attempt> {
    SCOPE
        .try_with(|s| {
            let span_id = context::new_span_id();
            headers.insert(
                TRACEPARENT.clone(),
                context::format(&s.trace_id, &span_id, s.sampled),
            );
            match &s.tracestate {
                Some(v) => headers.insert(TRACESTATE.clone(), v.clone()),
                None => headers.remove(&TRACESTATE),
            };
            s.recording.then(|| Attempt {
                scope: s.clone(),
                span_id,
                start: SystemTime::now(),
            })
        })
        .ok()
        .flatten()
}

impl Attempt {
    /// Ends the CLIENT span with its attributes (`error`: why no response came back).
    pub fn finish(self, name: String, attrs: Vec<Attr>, error: Option<String>) {
        let s = &self.scope;
        s.tracer.push(span::Finished {
            trace_id: s.trace_id,
            span_id: self.span_id,
            parent: Some(s.span_id),
            tracestate: s.tracestate.clone(),
            name,
            kind: Kind::Client,
            start: self.start,
            end: SystemTime::now(),
            attrs,
            error,
        });
    }
}

/// Runs `fut` as an INTERNAL span named `name` (a BFF part, the aggregation) under the current
/// scope; `describe` turns its output into attributes and an error. Without a recording scope
/// it is `fut` itself; with one, the span's bookkeeping is boxed, so an unsampled request's
/// future is no larger than `fut`. Call it from inside the request's task (it reads the scope).
pub fn child<F, N, D>(name: N, fut: F, describe: D) -> Child<F, N, D>
where
    F: Future,
    N: FnOnce() -> String,
    D: FnOnce(&F::Output) -> (Vec<Attr>, Option<String>),
{
    let recording = SCOPE.try_with(|s| s.recording.then(|| s.clone()));
    match recording.ok().flatten() {
        None => Either::Left(fut),
        Some(parent) => Either::Right(Box::pin(Recorded::new(parent, name, fut, describe))),
    }
}

/// What [`child`] returns: `fut` itself, or it boxed with its span.
pub type Child<F, N, D> = Either<F, Pin<Box<Recorded<F, N, D>>>>;

pin_project_lite::pin_project! {
    /// A future run as a recorded INTERNAL span (see [`child`]).
    pub struct Recorded<F: Future, N, D> {
        #[pin]
        fut: TaskLocalFuture<Scope, F>,
        done: Option<(Scope, Scope, SystemTime, N, D)>,
    }
}

impl<F: Future, N, D> Recorded<F, N, D> {
    fn new(parent: Scope, name: N, fut: F, describe: D) -> Self {
        let mut scope = parent.clone();
        scope.span_id = context::new_span_id();
        let start = SystemTime::now();
        Recorded {
            fut: SCOPE.scope(scope.clone(), fut),
            done: Some((parent, scope, start, name, describe)),
        }
    }
}

impl<F, N, D> Future for Recorded<F, N, D>
where
    F: Future,
    N: FnOnce() -> String,
    D: FnOnce(&F::Output) -> (Vec<Attr>, Option<String>),
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.fut.poll(cx));
        if let Some((parent, scope, start, name, describe)) = this.done.take() {
            finish_child(&parent, &scope, start, name(), describe(&out));
        }
        Poll::Ready(out)
    }
}

/// Pushes a finished INTERNAL span.
fn finish_child(
    parent: &Scope,
    scope: &Scope,
    start: SystemTime,
    name: String,
    (attrs, error): (Vec<Attr>, Option<String>),
) {
    parent.tracer.push(span::Finished {
        trace_id: scope.trace_id,
        span_id: scope.span_id,
        parent: Some(parent.span_id),
        tracestate: scope.tracestate.clone(),
        name,
        kind: Kind::Internal,
        start,
        end: SystemTime::now(),
        attrs,
        error,
    });
}
