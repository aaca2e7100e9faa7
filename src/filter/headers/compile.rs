//! Header edit tables (`add`, `set`, `remove`) and header match pairs, from their file form.

use http::{HeaderName, HeaderValue};
use toml::Spanned;

use super::HeaderOps;
use crate::config::Diagnostics;
use crate::config::file::{HeaderOpsFile, Text};

/// One `name = "value"` header entry; a bad name or value is reported.
pub fn compile_header_pair(
    d: &mut Diagnostics,
    name: &Spanned<String>,
    value: &Text,
    key: &str,
) -> Option<(HeaderName, HeaderValue)> {
    let n = HeaderName::from_bytes(name.get_ref().as_bytes());
    let v = HeaderValue::from_str(value.get_ref());
    match (n, v) {
        (Ok(n), Ok(v)) => Some((n, v)),
        (Err(_), _) => {
            d.error(
                name.span(),
                format!("{key}.{}", name.get_ref()),
                format!("bad header name \"{}\"", name.get_ref()),
            );
            None
        }
        (_, Err(_)) => {
            d.error(
                value.span(),
                format!("{key}.{}", name.get_ref()),
                "bad header value (control characters are not allowed)",
            );
            None
        }
    }
}

/// `request_headers`/`response_headers` = `{ add, set, remove }`.
pub fn compile_header_ops(d: &mut Diagnostics, ops: &HeaderOpsFile, key: &str) -> HeaderOps {
    let mut out = HeaderOps::default();
    for (n, v) in &ops.add {
        out.add
            .extend(compile_header_pair(d, n, v, &format!("{key}.add")));
    }
    for (n, v) in &ops.set {
        out.set
            .extend(compile_header_pair(d, n, v, &format!("{key}.set")));
    }
    for (i, n) in ops.remove.iter().enumerate() {
        match HeaderName::from_bytes(n.get_ref().as_bytes()) {
            Ok(h) => out.remove.push(h),
            Err(_) => d.error(
                n.span(),
                format!("{key}.remove[{i}]"),
                format!("bad header name \"{}\"", n.get_ref()),
            ),
        }
    }
    out
}
