//! Reading the admin `/metrics` exposition strictly and looking samples up by name and labels.

use http::StatusCode;

use super::gateway::admin_get;

/// Parses Prometheus/OpenMetrics text strictly: every line must be a HELP, TYPE, UNIT or EOF
/// comment or a sample with a numeric value (the parser crate alone skips what it cannot read).
pub fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    use prometheus_parse::LineInfo;
    assert!(text.ends_with("# EOF\n"), "exposition must end with # EOF");
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } | LineInfo::Type { .. } => {}
            LineInfo::Sample { value, .. } => {
                let ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
                assert!(ok, "bad sample value in line: {line}");
            }
            LineInfo::Empty => panic!("empty line in exposition"),
            LineInfo::Ignored => assert!(
                line == "# EOF" || line.starts_with("# UNIT "),
                "unparseable line: {line}"
            ),
        }
    }
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `name` whose labels include all of `labels` (counters, gauges and
/// histogram `_count`/`_sum` are plain samples; histogram buckets are not looked at here).
pub fn metric(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    use prometheus_parse::Value;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// Scrapes and parses `/metrics` of an in-process gateway.
pub async fn scrape(running: &portico::Running) -> prometheus_parse::Scrape {
    let a = admin_get(running, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    parse_metrics(std::str::from_utf8(&a.body).unwrap())
}
