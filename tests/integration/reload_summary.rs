//! Reload summaries name every section that changed, and one content version is one
//! generation however many times the watcher is woken for it.

use crate::support;

use portico::gateway::FILE_CHANGE;
use support::*;

fn text(max_headers: u32, rate: &str) -> String {
    config()
        .server("watch = false")
        .upstream("app", &["127.0.0.1:9"])
        .route("a", "/a", "app")
        .toml(&format!(
            "[limits]\nmax_headers = {max_headers}\n\n[rate_limits.per_ip]\nrate = \"{rate}\"\nkey = \"ip\""
        ))
        .build()
}

#[tokio::test]
async fn unchanged_contents_are_not_a_new_generation_and_sections_are_named() {
    let gw = TestGateway::start(&text(50, "10/s")).await;
    let g = &gw.running().gateway;
    assert_eq!(g.generation(), 1);

    // The watcher woken with nothing changed in the files: no new generation.
    let same = g.reload_by(FILE_CHANGE).unwrap();
    assert_eq!((same.generation, g.generation()), (1, 1));

    std::fs::write(gw.config_path(), text(60, "20/s")).unwrap();
    let changed = g.reload_by(FILE_CHANGE).unwrap();
    assert_eq!(changed.generation, 2);
    let summary = changed.summary.to_string();
    assert!(
        summary.contains("rate_limits +0 -0 ~1 (changed: per_ip)"),
        "{summary}"
    );
    assert!(
        summary.contains("settings +0 -0 ~1 (changed: limits)"),
        "{summary}"
    );
    assert!(
        !summary.contains("auth_providers"),
        "unchanged kinds stay out: {summary}"
    );

    // The same save seen again (a second event for it): still generation 2.
    assert_eq!(g.reload_by(FILE_CHANGE).unwrap().generation, 2);
    assert_eq!(g.generation(), 2);
    // An explicit reload (admin API, SIGHUP) always makes a generation.
    assert_eq!(g.reload_by("api").unwrap().generation, 3);
}
