//! Portico's HTTP/1.1 client for upstream connections. The request's own future drives the
//! socket: it writes the head and body (`encode`), reads the response head (`decode`) and hands
//! the connection to the response body (`body`, chunked framing in `chunked`), which puts it back
//! in its endpoint's idle list (`idle`) once the last byte is read. No task, channel or lock per
//! exchange; one read buffer per connection, shared by the head and body bytes it yields.

mod body;
mod chunked;
mod conn;
mod decode;
mod encode;
mod error;
mod exchange;
mod idle;

pub use body::ResponseBody;
pub use conn::Conn;
pub use error::Error;
pub use exchange::{Failure, send};
pub use idle::IdleList;

#[cfg(test)]
mod tests;
