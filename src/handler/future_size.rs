//! A guard on the size of the request future: each HTTP/1.1 connection keeps one allocation
//! of it while busy and each HTTP/2 stream boxes one, so its size is memory per connection and
//! per stream. Large, rarely taken branches (BFF, mirror, retries, new upstream connections,
//! claim routes) are boxed where they are awaited to keep it small.

use std::sync::Arc;

use crate::body::ClientBody;
use http::Request;

use crate::conn::ConnInfo;
use crate::runtime::Runtime;

/// The size of what `f` returns, without calling it.
fn output_size<A, B, C, R>(_: impl Fn(A, B, C) -> R) -> usize {
    std::mem::size_of::<R>()
}

/// Bytes, in a debug build (a release build's future is smaller). It was 19,808 before the
/// rare branches were boxed and the tracing wrappers stopped holding a second copy. 6,304
/// before the gateway's fields went beside the request (`net::added`): +144 (the fields,
/// borrowed where they can be, and the references passed down to the encoder), for about
/// 1,700 fewer instructions per proxied request — a busy request's memory, not an idle
/// connection's.
const BUDGET: usize = 6_500;

#[test]
fn the_request_future_stays_small() {
    let size = output_size(
        |rt: Arc<Runtime>, conn: &'static ConnInfo, req: Request<ClientBody>| {
            super::handle(rt, conn, req)
        },
    );
    println!("handler::handle's future: {size} bytes");
    assert!(
        size <= BUDGET,
        "the request future grew to {size} bytes (budget {BUDGET}): box the new branch where it is awaited"
    );
}
