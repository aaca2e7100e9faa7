//! Which profile and endpoint take a request.
//!
//! 1. A mounted profile owns its prefix: `/mobile/home` goes to `mobile`'s `/home`; a path
//!    under the mount that no endpoint takes is a 404 (405 when only the method is wrong).
//! 2. On other paths, the client is named by `x-client`, else recognised by a `user_agents`
//!    pattern, else the `[bff] default_profile` is used. If that profile has an endpoint for
//!    the path it answers; otherwise the proxy routes get the request. An unknown `x-client`
//!    with no default profile ends in a 404 `unknown-client` when no route takes the path.

use std::collections::HashSet;

use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method};

use super::{Bff, Endpoint, Profile};
use crate::error::GatewayError;
use crate::route::prefix_matches;

/// Header naming the client profile on unmounted paths.
pub static X_CLIENT: HeaderName = HeaderName::from_static("x-client");

/// A request matched to a profile endpoint.
#[derive(Debug)]
pub struct Target<'a> {
    /// The profile.
    pub profile: &'a Profile,
    /// The endpoint.
    pub endpoint: &'a Endpoint,
    /// Byte ranges of the endpoint's captures in the request path.
    pub captures: Vec<(usize, usize)>,
}

/// Outcome of the BFF lookup.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// A profile endpoint takes the request.
    Hit(Target<'a>),
    /// Not a BFF request: the proxy routes decide.
    Miss,
    /// `x-client` named no profile and there is no default: a 404 if no route takes it.
    UnknownClient,
}

impl Lookup<'_> {
    /// Turns the route table's "no route" into "unknown client" when that is the reason.
    pub fn explain_miss(&self, err: GatewayError) -> GatewayError {
        match (self, err) {
            (Lookup::UnknownClient, GatewayError::NoRoute) => GatewayError::BffUnknownClient,
            (_, e) => e,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Box<str>),
    Capture,
}

/// An endpoint path such as `/orders/{id}`: literal segments and whole-segment captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPath {
    segs: Box<[Seg]>,
    /// Capture names, in order.
    pub captures: Box<[Box<str>]>,
    text: Box<str>,
}

/// Segments of a path after the leading `/` with their byte offsets (`/` has none).
fn segments(path: &str) -> impl Iterator<Item = (usize, &str)> {
    let body = path.strip_prefix('/').unwrap_or(path);
    let mut offset = path.len() - body.len();
    body.split('/')
        .filter(move |_| !body.is_empty())
        .map(move |s| {
            let at = offset;
            offset += s.len() + 1;
            (at, s)
        })
}

impl EndpointPath {
    /// Parses an endpoint path; errors are messages for the config diagnostics.
    pub fn parse(text: &str) -> Result<EndpointPath, String> {
        if !text.starts_with('/') || text.contains(['?', '#', ' ', '%']) {
            return Err(format!(
                "bad path \"{text}\": must start with '/' and hold no query, fragment, spaces or escapes"
            ));
        }
        let mut segs = Vec::new();
        let mut captures: Vec<Box<str>> = Vec::new();
        for (_, seg) in segments(text) {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(format!(
                        "bad capture `{seg}` in \"{text}\": use `{{name}}` with letters, digits, `_` or `-`"
                    ));
                }
                if captures.iter().any(|c| **c == *name) {
                    return Err(format!("capture `{seg}` appears twice in \"{text}\""));
                }
                captures.push(name.into());
                segs.push(Seg::Capture);
            } else if seg.contains(['{', '}']) {
                return Err(format!(
                    "bad segment `{seg}` in \"{text}\": a capture is a whole segment, e.g. `/orders/{{id}}`"
                ));
            } else if seg == "." || seg == ".." {
                return Err(format!("bad path \"{text}\": dot-segments are not allowed"));
            } else {
                segs.push(Seg::Lit(seg.into()));
            }
        }
        Ok(EndpointPath {
            segs: segs.into(),
            captures: captures.into(),
            text: text.into(),
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first literal segment, or `None` when the path starts with a capture or is `/`.
    fn first_literal(&self) -> Option<&str> {
        match self.segs.first() {
            Some(Seg::Lit(l)) => Some(l),
            _ => None,
        }
    }

    /// Matches `path`; capture ranges are pushed shifted by `offset`.
    fn matches(&self, path: &str, offset: usize, caps: &mut Vec<(usize, usize)>) -> bool {
        caps.clear();
        let mut it = segments(path);
        for seg in self.segs.iter() {
            let Some((at, s)) = it.next() else {
                return false;
            };
            match seg {
                Seg::Lit(l) if **l == *s => {}
                Seg::Lit(_) => return false,
                Seg::Capture if s.is_empty() => return false,
                Seg::Capture => caps.push((offset + at, offset + at + s.len())),
            }
        }
        it.next().is_none()
    }
}

/// A `User-Agent` pattern: `*` matches any run of characters; case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Box<[u8]>);

impl Glob {
    /// Compiles a pattern.
    pub fn new(pattern: &str) -> Glob {
        Glob(pattern.to_ascii_lowercase().into_bytes().into())
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &[u8]) -> bool {
        let p = &self.0;
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < text.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ti));
                pi += 1;
            } else if pi < p.len() && p[pi] == text[ti].to_ascii_lowercase() {
                pi += 1;
                ti += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

/// Precomputed facts that let plain proxy requests skip the BFF lookup cheaply.
#[derive(Debug, Default)]
pub struct Prefilter {
    /// First literal segments of every endpoint path.
    pub first_segments: HashSet<Box<str>>,
    /// Some endpoint starts with a capture or is `/`: every path is a candidate.
    pub any_path: bool,
}

impl Prefilter {
    /// Adds an endpoint path.
    pub fn add(&mut self, path: &EndpointPath) {
        match path.first_literal() {
            Some(l) => {
                self.first_segments.insert(l.into());
            }
            None => self.any_path = true,
        }
    }

    fn may_match(&self, path: &str) -> bool {
        self.any_path
            || segments(path)
                .next()
                .is_some_and(|(_, s)| self.first_segments.contains(s))
    }
}

/// An endpoint and its capture ranges.
type Found<'a> = (&'a Endpoint, Vec<(usize, usize)>);

impl Profile {
    /// The endpoint for `method` and `path` (the path below the mount).
    fn endpoint(
        &self,
        method: &Method,
        path: &str,
        offset: usize,
    ) -> Result<Found<'_>, GatewayError> {
        let mut caps = Vec::new();
        let mut allow: Vec<&str> = Vec::new();
        for ep in self.endpoints.iter() {
            if !ep.path.matches(path, offset, &mut caps) {
                continue;
            }
            if ep.method == method || (method == Method::HEAD && ep.method == Method::GET) {
                return Ok((ep, caps));
            }
            allow.push(ep.method.as_str());
            if ep.method == Method::GET {
                allow.push(Method::HEAD.as_str());
            }
        }
        if allow.is_empty() {
            return Err(GatewayError::NoRoute);
        }
        allow.sort_unstable();
        allow.dedup();
        Err(GatewayError::MethodNotAllowed {
            allow: HeaderValue::from_str(&allow.join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static("")),
        })
    }
}

impl Bff {
    /// Finds the profile endpoint for a request, if any.
    pub fn find(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Lookup<'_>, GatewayError> {
        if self.profiles.is_empty() {
            return Ok(Lookup::Miss);
        }
        for (mount, i) in self.mounts.iter() {
            if prefix_matches(mount, path) {
                let profile = &*self.profiles[*i];
                let rest = &path[mount.len()..];
                let (rest, offset) = if rest.is_empty() {
                    ("/", 0)
                } else {
                    (rest, mount.len())
                };
                let (endpoint, captures) = profile.endpoint(method, rest, offset)?;
                return Ok(Lookup::Hit(Target {
                    profile,
                    endpoint,
                    captures,
                }));
            }
        }
        if !self.prefilter.may_match(path) {
            return Ok(Lookup::Miss);
        }
        let (chosen, unknown) = match headers.get(&X_CLIENT) {
            Some(name) => match self.by_name(name.as_bytes()) {
                Some(i) => (Some(i), false),
                None => (self.default, self.default.is_none()),
            },
            None => (self.by_agent(headers).or(self.default), false),
        };
        let Some(i) = chosen else {
            return Ok(if unknown {
                Lookup::UnknownClient
            } else {
                Lookup::Miss
            });
        };
        let profile = &*self.profiles[i];
        Ok(match profile.endpoint(method, path, 0) {
            Ok((endpoint, captures)) => Lookup::Hit(Target {
                profile,
                endpoint,
                captures,
            }),
            Err(_) => Lookup::Miss,
        })
    }

    fn by_name(&self, name: &[u8]) -> Option<usize> {
        self.profiles
            .iter()
            .position(|p| p.name.as_bytes().eq_ignore_ascii_case(name))
    }

    fn by_agent(&self, headers: &HeaderMap) -> Option<usize> {
        if self.agents.is_empty() {
            return None;
        }
        let ua = headers.get(USER_AGENT)?.as_bytes();
        self.agents
            .iter()
            .find(|(glob, _)| glob.matches(ua))
            .map(|(_, i)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_paths_match_whole_segments() {
        let p = EndpointPath::parse("/orders/{id}/lines/{line}").unwrap();
        let mut caps = Vec::new();
        assert!(p.matches("/orders/7/lines/2", 0, &mut caps));
        assert_eq!(caps, [(8, 9), (16, 17)]);
        assert!(p.matches("/orders/7/lines/2", 10, &mut caps));
        assert_eq!(caps, [(18, 19), (26, 27)]);
        assert!(!p.matches("/orders/7/lines", 0, &mut caps));
        assert!(!p.matches("/orders//lines/2", 0, &mut caps));
        assert!(!p.matches("/orders/7/lines/2/x", 0, &mut caps));
        let root = EndpointPath::parse("/").unwrap();
        assert!(root.matches("/", 0, &mut caps));
        assert!(!root.matches("/x", 0, &mut caps));
        assert_eq!(&*p.captures, &["id".into(), "line".into()] as &[Box<str>]);
    }

    #[test]
    fn bad_endpoint_paths() {
        for bad in [
            "home",
            "/a?b",
            "/a/{}",
            "/a/x{id}",
            "/a/{id}/{id}",
            "/a/../b",
            "/a%2f",
        ] {
            assert!(EndpointPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn globs() {
        let g = Glob::new("*Android*");
        assert!(g.matches(b"Mozilla/5.0 (Linux; android 14)"));
        assert!(!g.matches(b"Mozilla/5.0 (iPhone)"));
        assert!(Glob::new("curl/*").matches(b"curl/8.5.0"));
        assert!(!Glob::new("curl/*").matches(b"xcurl/8"));
        assert!(Glob::new("a*b*c").matches(b"aXXbYYc"));
        assert!(!Glob::new("a*b*c").matches(b"aXXbYY"));
        assert!(Glob::new("*").matches(b""));
    }
}
