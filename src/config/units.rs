//! Parsers for the human units used in config files: durations, byte sizes and rates.

use std::time::Duration;

/// The standard HTTP methods a config may name.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Parses a standard HTTP method name, in any case.
pub fn parse_method(text: &str) -> Result<http::Method, String> {
    let upper = text.to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        http::Method::from_bytes(upper.as_bytes()).map_err(|e| e.to_string())
    } else {
        Err(format!(
            "unknown method \"{text}\" (use one of {})",
            METHODS.join(", ")
        ))
    }
}

/// Parses "250ms", "2s", "1m", "1h", "1.5s" or "0" into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("bad duration \"{text}\": add a unit (ms, s, m, h), e.g. \"250ms\"")
        })?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("bad duration \"{text}\": expected a number then ms, s, m or h"))?;
    let scale = match unit {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(format!(
                "bad duration \"{text}\": unknown unit \"{unit}\" (use ms, s, m or h)"
            ));
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 10.0 * 365.0 * 86400.0 {
        return Err(format!("bad duration \"{text}\": too large"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration the way the config writes one: `250ms`, `30s`, `2m`, `1h` (the largest unit that
/// divides it).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// Parses "512", "16KiB", "10MiB", "1GiB", "10MB", "64kb" into a byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: u64 = num
        .parse()
        .map_err(|_| format!("bad size \"{text}\": expected a number then B, KiB, MiB or GiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("bad size \"{text}\": unknown unit \"{other}\"")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("bad size \"{text}\": too large"))
}

/// A rate such as "100/s": `count` events per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Events allowed in one period.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

/// Parses "100/s", "20/m", "1000/h" (also "5/10s").
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || {
        format!(
            "bad rate \"{text}\": expected COUNT/UNIT such as \"100/s\", \"20/m\" or \"1000/h\""
        )
    };
    let (count, per) = text.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("bad rate \"{text}\": the count must be at least 1"));
    }
    let per = per.trim();
    let per = match per {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86400),
        other => parse_duration(other).map_err(|_| bad())?,
    };
    if per.is_zero() {
        return Err(bad());
    }
    Ok(Rate { count, per })
}

/// Proleptic Gregorian (year, month, day) for days since 1970-01-01 (H. Hinnant's algorithm):
/// the one date conversion of the crate (access log, admin API), so no date crate is needed.
pub fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `2024-05-01T12:34:56.789Z` (UTC).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (year, month, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| rfc3339(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_714_566_896), "2024-05-01T12:34:56.000Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5 sec").unwrap_err().contains("5 sec"));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("1e300h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("16KiB").unwrap(), 16 << 10);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1kb").unwrap(), 1000);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("100/s").unwrap(),
            Rate {
                count: 100,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(parse_rate("20/m").unwrap().per, Duration::from_secs(60));
        assert_eq!(parse_rate("5/10s").unwrap().per, Duration::from_secs(10));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("100").is_err());
        assert!(parse_rate("100/fortnight").is_err());
    }
}
