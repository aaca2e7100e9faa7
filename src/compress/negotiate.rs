//! Accept-Encoding negotiation (RFC 9110 §12.5.3): the client's q-values decide, the server's
//! order breaks ties; `q=0` refuses a coding, `*` covers the codings the client did not name.

use super::Algorithm;

/// The coding to answer with: of `ours` (in preference order), the one the client weights
/// highest; `None` when it accepts none of them. Malformed members are ignored.
pub fn negotiate(ours: &[Algorithm], accept_encoding: &[u8]) -> Option<Algorithm> {
    let Ok(text) = std::str::from_utf8(accept_encoding) else {
        return None;
    };
    // The q-value (in thousandths) each of ours got by name, and what `*` gives the others.
    let mut named: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    for member in text.split(',') {
        let mut parts = member.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if coding.is_empty() {
            continue;
        }
        let mut q = Some(1000);
        for param in parts {
            let (k, v) = param.split_once('=').unwrap_or((param, ""));
            if k.trim().eq_ignore_ascii_case("q") {
                q = parse_q(v.trim());
            }
        }
        let Some(q) = q else { continue };
        if coding == "*" {
            star = Some(q);
        } else if let Some(i) = index(coding) {
            named[i] = Some(named[i].map_or(q, |old| old.max(q)));
        }
    }
    let mut best: Option<(u16, Algorithm)> = None;
    for &a in ours {
        let q = named[slot(a)].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, a));
        }
    }
    best.map(|(_, a)| a)
}

/// The slot of a coding token (`x-gzip` is gzip, RFC 9110 §8.4.1.3).
fn index(coding: &str) -> Option<usize> {
    [
        ("zstd", Algorithm::Zstd),
        ("br", Algorithm::Brotli),
        ("gzip", Algorithm::Gzip),
        ("x-gzip", Algorithm::Gzip),
    ]
    .iter()
    .find(|(t, _)| coding.eq_ignore_ascii_case(t))
    .map(|(_, a)| slot(*a))
}

fn slot(a: Algorithm) -> usize {
    match a {
        Algorithm::Zstd => 0,
        Algorithm::Brotli => 1,
        Algorithm::Gzip => 2,
    }
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Algorithm::*;

    const ALL: &[Algorithm] = &[Zstd, Brotli, Gzip];

    fn pick(header: &str) -> Option<Algorithm> {
        negotiate(ALL, header.as_bytes())
    }

    #[test]
    fn server_order_breaks_ties() {
        assert_eq!(pick("gzip, deflate, br, zstd"), Some(Zstd));
        assert_eq!(pick("gzip, br"), Some(Brotli));
        assert_eq!(pick("gzip"), Some(Gzip));
        assert_eq!(pick("x-gzip"), Some(Gzip));
        assert_eq!(negotiate(&[Gzip, Brotli], b"br, gzip"), Some(Gzip));
    }

    #[test]
    fn client_weights_win() {
        assert_eq!(pick("zstd;q=0.5, gzip;q=0.8"), Some(Gzip));
        assert_eq!(pick("br;q=1.0, zstd;q=0.999"), Some(Brotli));
        assert_eq!(pick("ZSTD;Q=0.2, gzip;q=0.1"), Some(Zstd));
    }

    #[test]
    fn q_zero_refuses_and_star_covers_the_rest() {
        assert_eq!(pick("gzip;q=0"), None);
        assert_eq!(pick("zstd;q=0, br;q=0, *"), Some(Gzip));
        assert_eq!(pick("*;q=0"), None);
        assert_eq!(pick("*"), Some(Zstd));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick(""), None);
        assert_eq!(pick("deflate"), None);
    }

    #[test]
    fn malformed_members_are_ignored() {
        assert_eq!(pick("gzip;q=2, br;q=abc, zstd;q=0.1234"), None);
        assert_eq!(pick(",,gzip;q=0.5,,"), Some(Gzip));
        assert_eq!(negotiate(ALL, b"\xff\xfe"), None);
    }
}
