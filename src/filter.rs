//! Request filters, run in a fixed order by the handler: auth, rate limit, headers.

pub mod headers;
