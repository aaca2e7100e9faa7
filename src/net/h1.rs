//! Portico's HTTP/1.1 codec, both sides.
//!
//! Client (upstream connections): the request's own future drives the socket: it writes the
//! head and body (`encode`), reads the response head (`decode`) and hands the connection to the
//! response body (`body`, chunked framing in `chunked`), which puts it back in its endpoint's
//! idle list (`idle`) once the last byte is read. No task, channel or lock per exchange; one read
//! buffer per connection, shared by the head and body bytes it yields.
//!
//! Server (client connections): the connection (`wire`) is read into one buffer; a request head
//! is parsed from it (`request_head`), its body reads on from the same buffer while it holds the
//! connection (`inbound`), and the response head is written with its framing
//! (`response_head`). The loop that drives them is the server's (`server::h1`).

mod body;
mod chunked;
mod conn;
mod decode;
mod encode;
mod error;
mod exchange;
mod idle;
mod inbound;
mod names;
pub mod request_head;
mod respond;
pub mod response_head;
mod wire;

pub use body::ResponseBody;
pub use conn::Conn;
pub use error::Error;
pub use exchange::{Failure, send};
pub use idle::IdleList;
pub use inbound::{Back, Inbound, InboundError, Returned, discard_buffered};
pub use names::Names;
pub use respond::{WriteError, write_response};
pub use wire::{Io, PendingUpgrade, Upgraded, Wire};

#[cfg(test)]
mod tests;
