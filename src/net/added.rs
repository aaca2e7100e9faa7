//! The fields the gateway adds to a request it proxies, held beside the request's `HeaderMap`
//! until the head is written: Portico's HTTP/1 encoder writes them straight into the upstream
//! head (no map insert, name hash or probe per field); every other sender moves them into the
//! map first ([`Extra::move_into`]).

use http::header::{HOST, HeaderMap, HeaderName, HeaderValue};

/// `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-forwarded-for`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `x-forwarded-proto: http`.
pub static HTTP: HeaderValue = HeaderValue::from_static("http");
/// `x-forwarded-proto: https`.
pub static HTTPS: HeaderValue = HeaderValue::from_static("https");

/// The gateway's own fields on a proxied request. The invariant the sender relies on: a field
/// held here is not also in the request's map (the client's copy was removed), and with
/// `replace_host` the map's Host is the client's and is not sent (the sender names the
/// endpoint instead). Values are borrowed where they outlive the request (the connection's
/// address, the request id), so the request's future stays small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Added<'a> {
    /// `x-forwarded-for`.
    pub forwarded_for: Option<&'a HeaderValue>,
    /// `x-forwarded-proto` ([`HTTP`] or [`HTTPS`]).
    pub forwarded_proto: Option<&'static HeaderValue>,
    /// `x-forwarded-host`.
    pub forwarded_host: Option<HeaderValue>,
    /// `x-request-id`.
    pub request_id: Option<&'a HeaderValue>,
    /// The map's Host (the client's) stays for readers of the request but is not sent.
    pub replace_host: bool,
}

/// Nothing added: a request the gateway built itself says everything in its map.
pub static NONE: Added<'static> = Added {
    forwarded_for: None,
    forwarded_proto: None,
    forwarded_host: None,
    request_id: None,
    replace_host: false,
};

impl Added<'_> {
    /// The fields held, by name, in the order they are written.
    pub fn fields(&self) -> impl Iterator<Item = (&'static HeaderName, &HeaderValue)> {
        [
            (&X_FORWARDED_FOR, self.forwarded_for),
            (&X_FORWARDED_PROTO, self.forwarded_proto),
            (&X_FORWARDED_HOST, self.forwarded_host.as_ref()),
            (&X_REQUEST_ID, self.request_id),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
    }

    /// Moves the fields into `headers` (replacing any copy there) and drops the client's Host
    /// when it was not to be sent; `self` is left empty, so the map alone says what goes.
    pub fn move_into(&mut self, headers: &mut HeaderMap) {
        if self.replace_host {
            headers.remove(HOST);
        }
        for (name, value) in self.fields() {
            headers.insert(name, value.clone());
        }
        *self = Added::default();
    }
}

/// What a sender writes besides the request's map for one attempt: the Host naming the endpoint
/// (when the request brings none to send) and the gateway's fields.
#[derive(Debug, Clone, Copy)]
pub struct Extra<'a> {
    /// Written as the head's first field.
    pub host: Option<&'a HeaderValue>,
    /// The gateway's fields.
    pub added: &'a Added<'a>,
}

impl Extra<'_> {
    /// Nothing beside the map.
    pub const NONE: Extra<'static> = Extra {
        host: None,
        added: &NONE,
    };

    /// Whether the map's field `name` is sent (the client's Host is not when it is replaced).
    #[inline]
    pub fn sends(&self, name: &HeaderName) -> bool {
        !(self.added.replace_host && name == HOST)
    }

    /// Puts everything in `headers`, for senders that write only a map (HTTP/2, upgrades).
    pub fn move_into(self, headers: &mut HeaderMap) {
        let mut added = self.added.clone();
        added.move_into(headers);
        if let Some(h) = self.host {
            headers.insert(HOST, h.clone());
        }
    }
}

/// Whether `name` is one of the fields the gateway sets when it forwards (the four above and
/// `forwarded`): a scan for the client's copies by length first, then bytes.
#[inline]
pub fn is_forwarding_name(name: &HeaderName) -> bool {
    let s = name.as_str();
    match s.len() {
        9 => s == "forwarded",
        12 => s == X_REQUEST_ID.as_str(),
        15 => s == X_FORWARDED_FOR.as_str(),
        16 => s == X_FORWARDED_HOST.as_str(),
        17 => s == X_FORWARDED_PROTO.as_str(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PEER: HeaderValue = HeaderValue::from_static("10.0.0.1");
    static ID: HeaderValue = HeaderValue::from_static("abc-1");

    fn full() -> Added<'static> {
        Added {
            forwarded_for: Some(&PEER),
            forwarded_proto: Some(&HTTPS),
            forwarded_host: Some(HeaderValue::from_static("shop.example")),
            request_id: Some(&ID),
            replace_host: true,
        }
    }

    #[test]
    fn fields_are_listed_in_order_and_only_when_held() {
        let names: Vec<&str> = full().fields().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-request-id"
            ]
        );
        let some = Added {
            request_id: Some(&ID),
            ..Added::default()
        };
        let got: Vec<_> = some.fields().collect();
        assert_eq!(got, [(&X_REQUEST_ID, &ID)]);
        assert_eq!(NONE.fields().count(), 0);
    }

    #[test]
    fn moving_into_the_map_replaces_copies_drops_the_client_host_and_empties() {
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_static("client.example"));
        map.insert(&X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        map.insert("accept", HeaderValue::from_static("*/*"));
        let mut added = full();
        added.move_into(&mut map);
        assert_eq!(added, Added::default());
        assert!(map.get(HOST).is_none());
        assert_eq!(map.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(map[&X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(map[&X_FORWARDED_PROTO], "https");
        assert_eq!(map[&X_FORWARDED_HOST], "shop.example");
        assert_eq!(map[&X_REQUEST_ID], "abc-1");
        assert_eq!(map["accept"], "*/*");
    }

    #[test]
    fn an_extra_moved_into_the_map_names_the_endpoint() {
        let added = full();
        let host = HeaderValue::from_static("10.1.1.1:8080");
        let extra = Extra {
            host: Some(&host),
            added: &added,
        };
        assert!(!extra.sends(&HOST));
        assert!(extra.sends(&X_REQUEST_ID));
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_static("client.example"));
        extra.move_into(&mut map);
        assert_eq!(map.get_all(HOST).iter().count(), 1);
        assert_eq!(map[HOST], "10.1.1.1:8080");
        assert_eq!(map[&X_REQUEST_ID], "abc-1");
        // Nothing beside the map: the map's Host is sent.
        assert!(Extra::NONE.sends(&HOST));
    }

    #[test]
    fn forwarding_names_are_recognised_exactly() {
        for name in [
            "forwarded",
            "x-request-id",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
        ] {
            assert!(is_forwarding_name(&HeaderName::from_static(name)), "{name}");
        }
        for name in [
            "host",
            "accept",
            "x-forwarded",
            "forwardee",
            "x-request-ix",
            "x-forwarded-fox",
            "x-forwarded-hosts",
            "x-real-ip",
            "content-location",
        ] {
            assert!(
                !is_forwarding_name(&HeaderName::from_bytes(name.as_bytes()).unwrap()),
                "{name}"
            );
        }
    }
}
