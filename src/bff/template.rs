//! Templates for part paths, header values and bodies, parsed once at config load.
//!
//! `{claims.sub}`, `{path.id}`, `{query.q}`, `{header.accept-language}`, `{body.items}` and
//! `{PART.field.path}` (an earlier part's answer); `|` gives fallbacks tried in order, and a
//! quoted literal ends a chain: `{query.limit|'10'}`. `{{` and `}}` are literal braces.
//! Values are percent-encoded for the spot they land in: a path segment or a query component.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};

/// Everything but RFC 3986 unreserved characters is encoded, in path segments and queries alike:
/// a value can never add a segment, a parameter or a fragment.
pub const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Names that cannot be part names because templates use them as sources.
pub const RESERVED_SOURCES: [&str; 5] = ["claims", "path", "query", "header", "body"];

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Verified JWT claims.
    Claims,
    /// A capture of the endpoint path, by index.
    Path(usize),
    /// A query parameter of the client request (percent-decoded).
    Query(Box<str>),
    /// A client request header.
    Header(HeaderName),
    /// The client's JSON body.
    Body,
    /// The raw answer of another part, by index.
    Part(usize),
}

impl Source {
    /// Whether the client controls this value (so its absence is the client's mistake).
    fn is_client_controlled(&self) -> bool {
        !matches!(self, Source::Part(_))
    }
}

/// One source plus a dotted path into it (`claims.org.id`, `orders.items.0.id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    /// The source.
    pub source: Source,
    /// Keys (or array indexes) below the source's value.
    pub path: Box<[Box<str>]>,
}

/// One alternative of a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Alt {
    Var(Var),
    Literal(Box<str>),
}

/// How a value is written where it lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// One path segment: percent-encoded, never empty, never `.` or `..`.
    Segment,
    /// A query component: percent-encoded.
    Query,
    /// As is (header values, JSON strings).
    Raw,
}

/// `{a|b|'c'}`: the first alternative that has a value wins.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placeholder {
    alts: Box<[Alt]>,
    text: Box<str>,
    encoding: Encoding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(Box<str>),
    Hole(Placeholder),
}

/// What a template is for, which decides how its values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request path and query: segments before `?`, query components after.
    Path,
    /// A header value or a string inside a JSON body: values as they are.
    Text,
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Box<[Piece]>,
    literal_len: usize,
}

/// Names a template may refer to.
pub struct Scope<'a> {
    /// Capture names of the endpoint path, in order.
    pub captures: &'a [Box<str>],
    /// Part names of the endpoint, in order.
    pub parts: &'a [&'a str],
}

/// The values a template reads at request time.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// Verified claims, if the endpoint authenticates.
    pub claims: Option<&'a Map<String, Value>>,
    /// The client request path.
    pub path: &'a str,
    /// Byte ranges of the endpoint captures in `path`.
    pub captures: &'a [(usize, usize)],
    /// The client request query string.
    pub query: Option<&'a str>,
    /// The client request headers.
    pub headers: &'a HeaderMap,
    /// The client's parsed JSON body, if the endpoint reads it.
    pub body: Option<&'a Value>,
    /// Raw answers of finished parts (`None`: not finished or failed).
    pub parts: &'a [Option<Value>],
}

/// A placeholder had no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The placeholder as written, e.g. `{claims.sub|query.user}`.
    pub placeholder: Box<str>,
    /// True when only client-controlled sources were involved (a client error, 400), false
    /// when a part's answer lacked the value (an upstream problem).
    pub from_client: bool,
}

/// A resolved value, before encoding.
pub enum Resolved<'a> {
    /// Text (captures, query parameters, headers, literals).
    Str(Cow<'a, str>),
    /// A JSON value (claims, body, part answers).
    Json(&'a Value),
}

impl Template {
    /// Parses `text`; errors are messages for the config diagnostics.
    pub fn parse(text: &str, kind: Kind, scope: &Scope<'_>) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut in_query = false;
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            let (before, after) = rest.split_at(i);
            lit.push_str(before);
            in_query |= before.contains('?');
            if let Some(tail) = after.strip_prefix("{{") {
                lit.push('{');
                rest = tail;
                continue;
            }
            if let Some(tail) = after.strip_prefix("}}") {
                lit.push('}');
                rest = tail;
                continue;
            }
            if after.starts_with('}') {
                return Err(format!(
                    "unmatched `}}` in template \"{text}\" (write `}}}}` for a literal brace)"
                ));
            }
            let close = after.find('}').ok_or_else(|| {
                format!("unclosed `{{` in template \"{text}\" (write `{{{{` for a literal brace)")
            })?;
            let inner = &after[1..close];
            let encoding = match (kind, in_query) {
                (Kind::Text, _) => Encoding::Raw,
                (Kind::Path, false) => Encoding::Segment,
                (Kind::Path, true) => Encoding::Query,
            };
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit).into()));
            }
            pieces.push(Piece::Hole(Placeholder {
                alts: parse_alts(inner, scope)?,
                text: after[..=close].into(),
                encoding,
            }));
            rest = &after[close + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit.into()));
        }
        let literal_len = pieces
            .iter()
            .map(|p| match p {
                Piece::Lit(l) => l.len(),
                Piece::Hole(_) => 0,
            })
            .sum();
        Ok(Template {
            pieces: pieces.into(),
            literal_len,
        })
    }

    /// The template with every placeholder replaced by `x`, to check its literal text.
    pub fn sample(&self) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => out.push_str(l),
                Piece::Hole(_) => out.push('x'),
            }
        }
        out
    }

    /// Every variable the template reads (to find part dependencies and needed inputs).
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Hole(h) => Some(h.alts.iter()),
                Piece::Lit(_) => None,
            })
            .flatten()
            .filter_map(|a| match a {
                Alt::Var(v) => Some(v),
                Alt::Literal(_) => None,
            })
    }

    /// When the template is exactly one placeholder, the value it resolves to (a body string
    /// such as `"{body.items}"` then inserts the JSON value itself, not its text).
    pub fn resolve_whole<'a>(&'a self, inputs: &Inputs<'a>) -> Option<Result<Value, Missing>> {
        let [Piece::Hole(h)] = &self.pieces[..] else {
            return None;
        };
        Some(match h.resolve(inputs, true) {
            Some(Resolved::Json(v)) => Ok(v.clone()),
            Some(Resolved::Str(s)) => Ok(Value::String(s.into_owned())),
            None => Err(h.missing()),
        })
    }

    /// Renders into a new string.
    pub fn render(&self, inputs: &Inputs<'_>) -> Result<String, Missing> {
        let mut out = String::with_capacity(self.literal_len + 16);
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => out.push_str(l),
                Piece::Hole(h) => {
                    let value = h.resolve(inputs, false).ok_or_else(|| h.missing())?;
                    if !write_value(&mut out, &value, h.encoding) {
                        return Err(h.missing());
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Placeholder {
    /// The first alternative with a usable value; `whole` accepts any non-null JSON value
    /// (the placeholder is a whole body value), otherwise only what can be written as text.
    fn resolve<'a>(&'a self, inputs: &Inputs<'a>, whole: bool) -> Option<Resolved<'a>> {
        self.alts.iter().find_map(|alt| match alt {
            Alt::Literal(l) => Some(Resolved::Str(Cow::Borrowed(l))),
            Alt::Var(v) => resolve_var(v, inputs).filter(|r| match r {
                Resolved::Json(Value::Null) => false,
                _ if whole => true,
                _ => usable(r, self.encoding),
            }),
        })
    }

    fn missing(&self) -> Missing {
        Missing {
            placeholder: self.text.clone(),
            from_client: self.alts.iter().all(|a| match a {
                Alt::Var(v) => v.source.is_client_controlled(),
                Alt::Literal(_) => true,
            }),
        }
    }
}

/// Whether a resolved value can be written with an encoding, so a fallback can be tried
/// instead: objects, arrays and null never go into text, empty text never into a path segment.
fn usable(r: &Resolved<'_>, encoding: Encoding) -> bool {
    let empty = match r {
        Resolved::Str(s) => s.is_empty(),
        Resolved::Json(Value::String(s)) => s.is_empty(),
        Resolved::Json(Value::Number(_) | Value::Bool(_)) => false,
        Resolved::Json(_) => return false,
    };
    !(empty && encoding == Encoding::Segment)
}

fn resolve_var<'a>(v: &'a Var, inputs: &Inputs<'a>) -> Option<Resolved<'a>> {
    let root: &'a Value = match &v.source {
        Source::Claims => {
            let claims = inputs.claims?;
            let (first, rest) = v.path.split_first()?;
            return json_at(claims.get(&**first)?, rest).map(Resolved::Json);
        }
        Source::Path(i) => {
            let &(start, end) = inputs.captures.get(*i)?;
            let raw = inputs.path.get(start..end)?;
            return percent_decode_str(raw)
                .decode_utf8()
                .ok()
                .map(Resolved::Str);
        }
        Source::Query(name) => return query_param(inputs.query?, name).map(Resolved::Str),
        Source::Header(name) => {
            let value = inputs.headers.get(name)?.to_str().ok()?;
            return Some(Resolved::Str(Cow::Borrowed(value)));
        }
        Source::Body => inputs.body?,
        Source::Part(i) => inputs.parts.get(*i)?.as_ref()?,
    };
    json_at(root, &v.path).map(Resolved::Json)
}

/// The value at a dotted path: object keys, or indexes into arrays.
pub fn json_at<'a>(mut value: &'a Value, path: &[Box<str>]) -> Option<&'a Value> {
    for key in path {
        value = match value {
            Value::Object(m) => m.get(&**key)?,
            Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The first value of a query parameter, decoded (`+` is a space, as in HTML forms).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    let raw = query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })?;
    if raw.contains('+') {
        let spaced = raw.replace('+', " ");
        let decoded = percent_decode_str(&spaced).decode_utf8().ok()?;
        Some(Cow::Owned(decoded.into_owned()))
    } else {
        percent_decode_str(raw).decode_utf8().ok()
    }
}

/// Writes a value; false when it cannot be written (wrong type, or empty in a path segment).
fn write_value(out: &mut String, value: &Resolved<'_>, encoding: Encoding) -> bool {
    let num: String;
    let text: &str = match value {
        Resolved::Str(s) => s,
        Resolved::Json(Value::String(s)) => s,
        Resolved::Json(Value::Bool(b)) => {
            if *b {
                "true"
            } else {
                "false"
            }
        }
        Resolved::Json(Value::Number(n)) => {
            num = n.to_string();
            &num
        }
        Resolved::Json(_) => return false,
    };
    match encoding {
        Encoding::Raw => out.push_str(text),
        Encoding::Query => out.extend(utf8_percent_encode(text, COMPONENT)),
        Encoding::Segment => {
            if text.is_empty() {
                return false;
            }
            // `.` and `..` would climb the backend's path: spell the dots out.
            if text.bytes().all(|b| b == b'.') {
                for _ in 0..text.len() {
                    out.push_str("%2E");
                }
            } else {
                out.extend(utf8_percent_encode(text, COMPONENT));
            }
        }
    }
    true
}

fn parse_alts(inner: &str, scope: &Scope<'_>) -> Result<Box<[Alt]>, String> {
    let mut alts = Vec::new();
    for raw in inner.split('|') {
        let alt = raw.trim();
        if let Some(lit) = alt
            .strip_prefix('\'')
            .and_then(|a| a.strip_suffix('\''))
            .filter(|_| alt.len() >= 2)
        {
            alts.push(Alt::Literal(lit.into()));
            continue;
        }
        if matches!(alts.last(), Some(Alt::Literal(_))) {
            return Err(format!(
                "`{{{inner}}}`: nothing can follow a quoted literal, it always has a value"
            ));
        }
        alts.push(Alt::Var(parse_var(alt, inner, scope)?));
    }
    Ok(alts.into())
}

fn parse_var(alt: &str, inner: &str, scope: &Scope<'_>) -> Result<Var, String> {
    if alt.is_empty() {
        return Err(format!("empty placeholder in `{{{inner}}}`"));
    }
    let mut it = alt.split('.');
    let head = it.next().unwrap_or_default();
    let path: Vec<Box<str>> = it.map(Box::from).collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(format!("`{alt}`: empty name between dots"));
    }
    let one = |what: &str| -> Result<&str, String> {
        match &path[..] {
            [name] => Ok(name),
            _ => Err(format!("`{alt}`: write `{head}.NAME` with one {what} name")),
        }
    };
    let (source, path) = match head {
        "claims" => {
            if path.is_empty() {
                return Err(format!("`{alt}`: name a claim, e.g. `claims.sub`"));
            }
            (Source::Claims, path)
        }
        "path" => {
            let name = one("capture")?;
            let i = scope
                .captures
                .iter()
                .position(|c| **c == *name)
                .ok_or_else(|| {
                    format!(
                        "`{alt}`: the endpoint path has no `{{{name}}}` capture{}",
                        list(" (captures: ", scope.captures.iter().map(|c| &**c), ")")
                    )
                })?;
            (Source::Path(i), Vec::new())
        }
        "query" => (Source::Query(one("parameter")?.into()), Vec::new()),
        "header" => {
            let name = one("header")?;
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{alt}`: bad header name \"{name}\""))?;
            (Source::Header(name), Vec::new())
        }
        "body" => (Source::Body, path),
        part => {
            let i = scope.parts.iter().position(|p| *p == part).ok_or_else(|| {
                format!(
                    "`{alt}`: unknown part `{part}`{}{} (sources are claims, path, query, header, body, or a part name)",
                    crate::config::shape::suggestion(part, scope.parts.iter().copied()),
                    list(" (parts of this endpoint: ", scope.parts.iter().copied(), ")")
                )
            })?;
            (Source::Part(i), path)
        }
    };
    Ok(Var {
        source,
        path: path.into(),
    })
}

fn list<'a>(before: &str, items: impl Iterator<Item = &'a str>, after: &str) -> String {
    let items: Vec<&str> = items.collect();
    if items.is_empty() {
        String::new()
    } else {
        format!("{before}{}{after}", items.join(", "))
    }
}

#[cfg(test)]
mod tests;
