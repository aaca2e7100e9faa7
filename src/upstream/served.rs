//! What a forwarded request reached (for the access log), and log-field helpers.

use http::uri::Authority;

/// Which endpoint a forwarded request reached and after how many attempts (for the access
/// log): filled in by [`super::Upstream::forward`] even when it fails.
#[derive(Debug, Default, Clone)]
pub struct Served {
    /// The last endpoint tried (`host:port`).
    pub endpoint: Option<Authority>,
    /// Endpoints tried, 1 unless a refused connection moved the request on.
    pub attempts: u32,
    /// The retry policy asks for `portico-attempts` on the answer.
    pub expose_attempts: bool,
}

/// Endpoint labels added and removed between two lists, as log fields: plain words, not
/// Debug lists (`added=10.0.0.9:80 removed=-`).
pub fn changes(before: &[String], after: &[String]) -> (String, String) {
    let only = |a: &[String], b: &[String]| {
        let v: Vec<&str> = a
            .iter()
            .filter(|l| !b.contains(l))
            .map(String::as_str)
            .collect();
        list_or_dash(&v)
    };
    (only(after, before), only(before, after))
}

/// `a b c`, or `-` for none.
fn list_or_dash(items: &[&str]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(" ")
    }
}

/// An error and its causes on one line, for logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}
