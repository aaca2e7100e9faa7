//! `redirect = {...}` / `respond = {...}` -> [`Answer`]: the template parsed once, statuses and
//! content types checked at load.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use super::{Answer, Kind, Piece, Template};
use crate::config::Diagnostics;
use crate::config::file::RouteFile;
use crate::filter::headers::HeaderOps;

/// The template values a `redirect.to` may use.
const VALUES: &str = "{scheme}, {host}, {path}, {rest}, {query}, {request_uri}, {query.NAME}, \
                      {header.NAME}, {claims.NAME}";

/// Compiles the route's `redirect` or `respond` (the caller checked one is set).
/// `prefix_len`: the length of the route's path prefix, `None` for an exact path.
pub fn compile(
    d: &mut Diagnostics,
    r: &RouteFile,
    key: &str,
    prefix_len: Option<usize>,
    response_headers: HeaderOps,
) -> Option<Answer> {
    let kind = match (&r.redirect, &r.respond) {
        (Some(_), Some(respond)) => {
            d.error(
                respond.span(),
                format!("{key}.respond"),
                "give `redirect` or `respond`, not both",
            );
            return None;
        }
        (Some(redirect), None) => {
            let file = redirect.get_ref();
            let to = match parse(file.to.get_ref()) {
                Ok(t) => t,
                Err(e) => {
                    d.error(file.to.span(), format!("{key}.redirect.to"), e);
                    return None;
                }
            };
            if r.auth.is_none() && to.0.iter().any(|p| matches!(p, Piece::Claim(_))) {
                d.error(
                    file.to.span(),
                    format!("{key}.redirect.to"),
                    "`{claims.*}` needs `auth` on the route (claims come from a verified token)",
                );
                return None;
            }
            let status = match &file.status {
                None => StatusCode::FOUND,
                Some(s) => match *s.get_ref() {
                    n @ (301 | 302 | 303 | 307 | 308) => StatusCode::from_u16(n as u16).ok()?,
                    n => {
                        d.error(
                            s.span(),
                            format!("{key}.redirect.status"),
                            format!("redirect status {n}: expected 301, 302, 303, 307 or 308"),
                        );
                        return None;
                    }
                },
            };
            Kind::Redirect { to, status }
        }
        (None, Some(respond)) => {
            let file = respond.get_ref();
            let status = match &file.status {
                None => StatusCode::OK,
                Some(s) => match *s.get_ref() {
                    n @ 200..=599 => StatusCode::from_u16(n as u16).ok()?,
                    n => {
                        d.error(
                            s.span(),
                            format!("{key}.respond.status"),
                            format!("respond status {n}: expected 200 to 599"),
                        );
                        return None;
                    }
                },
            };
            let content_type = match &file.content_type {
                None => HeaderValue::from_static("text/plain; charset=utf-8"),
                Some(ct) => match HeaderValue::from_str(ct.get_ref()) {
                    Ok(v) if !ct.get_ref().is_empty() => v,
                    _ => {
                        d.error(
                            ct.span(),
                            format!("{key}.respond.content_type"),
                            "not a valid header value",
                        );
                        return None;
                    }
                },
            };
            let body = file.body.as_ref().map(|b| b.get_ref().clone());
            Kind::Respond {
                status,
                content_type,
                body: Bytes::from(body.unwrap_or_default()),
            }
        }
        (None, None) => return None,
    };
    Some(Answer {
        kind,
        response_headers,
        prefix_len,
    })
}

/// Parses a `Location` template; `{{` and `}}` are literal braces.
pub fn parse(text: &str) -> Result<Template, String> {
    if text.is_empty() {
        return Err("empty redirect target".into());
    }
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("{{") {
            lit.push('{');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("}}") {
            lit.push('}');
            rest = r;
        } else if c == '{' {
            let end = rest
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in \"{text}\""))?;
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit).into()));
            }
            pieces.push(piece(&rest[1..end])?);
            rest = &rest[end + 1..];
        } else if c == '}' {
            return Err(format!(
                "unmatched `}}` in \"{text}\" (write `}}}}` for a brace)"
            ));
        } else if c.is_ascii_graphic() {
            lit.push(c);
            rest = &rest[1..];
        } else {
            return Err(format!(
                "{c:?} in \"{text}\": a Location holds visible ASCII only (percent-encode it)"
            ));
        }
    }
    if !lit.is_empty() {
        pieces.push(Piece::Literal(lit.into()));
    }
    Ok(Template(pieces.into()))
}

fn piece(name: &str) -> Result<Piece, String> {
    let unknown = || format!("unknown template value `{{{name}}}`; expected one of {VALUES}");
    Ok(match name {
        "scheme" => Piece::Scheme,
        "host" => Piece::Host,
        "path" => Piece::Path,
        "rest" => Piece::Rest,
        "query" => Piece::Query,
        "request_uri" => Piece::RequestUri,
        _ => match name.split_once('.') {
            Some(("query", q)) if !q.is_empty() => Piece::QueryParam(q.into()),
            Some(("header", h)) => {
                Piece::Header(HeaderName::from_bytes(h.as_bytes()).map_err(|_| unknown())?)
            }
            Some(("claims", c)) if !c.is_empty() && !c.split('.').any(str::is_empty) => {
                Piece::Claim(c.split('.').map(Box::from).collect())
            }
            _ => return Err(unknown()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_literals_and_escaped_braces() {
        let t = parse("https://{host}/x{{y}}{request_uri}").unwrap();
        assert_eq!(
            &*t.0,
            &[
                Piece::Literal("https://".into()),
                Piece::Host,
                Piece::Literal("/x{y}".into()),
                Piece::RequestUri,
            ]
        );
    }

    #[test]
    fn rejects_unknown_values_and_bad_text() {
        assert!(
            parse("{hostname}")
                .unwrap_err()
                .contains("unknown template value `{hostname}`")
        );
        assert!(parse("{claims.}").is_err());
        assert!(parse("/a{host").unwrap_err().contains("unclosed"));
        assert!(parse("/a}").unwrap_err().contains("unmatched"));
        assert!(parse("/a b").is_err());
        assert!(parse("").is_err());
    }
}
