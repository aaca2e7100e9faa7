//! `write_upstream` and `read_your_writes` of a route: file types -> [`Cqrs`].

use std::time::Duration;

use http::HeaderName;

use super::{Cqrs, Key, ReadYourWrites, Shared};
use crate::config::Diagnostics;
use crate::config::file::RouteFile;
use crate::config::file::cqrs::ReadYourWritesFile;
use crate::filter::auth::claims::ClaimPath;
use crate::route::compile::{Context, upstream_ref};

/// Default `read_your_writes.window`.
const DEFAULT_WINDOW: Duration = Duration::from_secs(5);
/// Default `read_your_writes.max_keys`.
const DEFAULT_MAX_KEYS: i64 = 10_000;

/// The CQRS settings of route `r` (`key`: e.g. `routes[2]`), or `None` without
/// `write_upstream`; `read_your_writes` without it is an error.
pub fn compile(d: &mut Diagnostics, key: &str, r: &RouteFile, cx: Context<'_>) -> Option<Cqrs> {
    let Some(name) = &r.write_upstream else {
        if let Some(ryw) = &r.read_your_writes {
            d.error(
                ryw.span(),
                format!("{key}.read_your_writes"),
                "`read_your_writes` needs `write_upstream` on the route",
            );
        }
        return None;
    };
    let before = d.errors.len();
    let write = upstream_ref(
        d,
        name,
        &format!("{key}.write_upstream"),
        r.id.get_ref(),
        cx,
    );
    let ryw = r
        .read_your_writes
        .as_ref()
        .and_then(|f| read_your_writes(d, key, f.get_ref(), r, cx));
    if d.errors.len() > before {
        return None;
    }
    Some(Cqrs { write: write?, ryw })
}

fn read_your_writes(
    d: &mut Diagnostics,
    key: &str,
    f: &ReadYourWritesFile,
    r: &RouteFile,
    cx: Context<'_>,
) -> Option<ReadYourWrites> {
    let has_auth = r.auth.is_some();
    let key = format!("{key}.read_your_writes");
    let before = d.errors.len();
    let which = d.parse(&f.key, format!("{key}.key"), parse_key);
    if matches!(which, Some(Key::Claim(_))) && !has_auth {
        d.error(
            f.key.span(),
            format!("{key}.key"),
            "a `claim:` key needs `auth` on the route (claims come from a verified token)",
        );
    }
    let window = d.positive_duration_or(&f.window, &format!("{key}.window"), DEFAULT_WINDOW);
    let header = f.consistency_header.as_ref().and_then(|h| {
        d.parse(h, format!("{key}.consistency_header"), |s| {
            HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("bad header name \"{s}\""))
        })
    });
    let max_keys = match &f.max_keys {
        None => DEFAULT_MAX_KEYS,
        Some(m) if (1..=10_000_000).contains(m.get_ref()) => *m.get_ref(),
        Some(m) => {
            d.error(
                m.span(),
                format!("{key}.max_keys"),
                format!("must be between 1 and 10000000, got {}", m.get_ref()),
            );
            DEFAULT_MAX_KEYS
        }
    };
    let shared = match &f.shared {
        Some(s) if *s.get_ref() => match cx.cluster {
            Some(c) => Some(Shared {
                cluster: c.clone(),
                prefix: format!("{}ryw:{}:", c.settings.key_prefix, r.id.get_ref()),
            }),
            None => {
                d.error(
                    s.span(),
                    format!("{key}.shared"),
                    "`shared = true` needs `[cluster]` (the Redis store the instances share)",
                );
                None
            }
        },
        _ => None,
    };
    if d.errors.len() > before {
        return None;
    }
    let mut ryw = ReadYourWrites::new(
        which?,
        window,
        header,
        usize::try_from(max_keys).unwrap_or(usize::MAX),
    );
    ryw.shared = shared;
    Some(ryw)
}

/// `claim:NAME`, `header:NAME` or `cookie:NAME`.
pub fn parse_key(text: &str) -> Result<Key, String> {
    let bad = |why: &str| format!("bad read_your_writes key \"{text}\": {why}");
    match text.split_once(':') {
        Some(("claim", name)) => ClaimPath::parse(name).map(Key::Claim),
        Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
            .map(Key::Header)
            .map_err(|_| bad("not a header name")),
        Some(("cookie", name))
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) =>
        {
            Ok(Key::Cookie(name.into()))
        }
        Some(("cookie", _)) => Err(bad("a cookie name is letters, digits and !#$%&'*+-.^_`|~")),
        _ => Err(bad("expected claim:NAME, header:NAME or cookie:NAME")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse() {
        assert!(matches!(parse_key("claim:sub"), Ok(Key::Claim(_))));
        assert!(matches!(parse_key("header:x-user"), Ok(Key::Header(_))));
        assert!(matches!(parse_key("cookie:sid"), Ok(Key::Cookie(_))));
        for bad in ["ip", "cookie:", "header:bad name", "sub", "query:x"] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }
}
