//! `portico check` on `[tracing]`: each bad key reported at its file:line:col with its key
//! path, and a reload with a bad one keeps the old config serving.

use crate::support;

use support::*;

const BAD: &str = r#"[server]
listen = "127.0.0.1:0"
admin_listen = ""

[tracing]
otlp_endpoint = "ftp://collector:4318/v1/traces"
sample_ratio = 1.5
service_name = " "
queue_size = 0
batch_size = 100000
flush_interval = "0s"
export_timeout = "soon"
"#;

#[test]
fn bad_tracing_keys_are_each_reported_with_their_place() {
    let (code, _, err) = check_config(BAD, &[]);
    assert_eq!(code, 1, "{err}");
    assert_errors_at(
        &err,
        &[
            (
                "6:17",
                "tracing.otlp_endpoint",
                "expected http:// or https://",
            ),
            (
                "7:16",
                "tracing.sample_ratio",
                "must be between 0.0 and 1.0, got 1.5",
            ),
            ("8:16", "tracing.service_name", "must not be empty"),
            ("9:14", "tracing.queue_size", "must be between 1 and"),
            ("10:14", "tracing.batch_size", "must be between 1 and 65536"),
            ("11:18", "tracing.flush_interval", "must be more than 0"),
            ("12:18", "tracing.export_timeout", ""),
        ],
    );
}

#[test]
fn unknown_tracing_keys_are_refused() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\n\n[tracing]\nsample_rate = 0.5\n";
    let (code, _, err) = check_config(text, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("gateway.toml:5:1"), "{err}");
    assert!(err.contains("sample_rate"), "{err}");
}

#[test]
fn a_good_tracing_table_passes() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\n\n[tracing]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\nsample_ratio = 0.1\nservice_name = \"edge\"\n";
    let (code, out, err) = check_config(text, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_bad_tracing_table_keeps_the_old_config() {
    let app = Backend::echo("app").await;
    let good = support::config()
        .upstream("app", &[app.addr])
        .route("app", "/app", "app")
        .toml("[tracing]\nsample_ratio = 1.0")
        .build();
    let gw = TestGateway::start(&good).await;
    std::fs::write(gw.config_path(), good.replace("1.0", "2.0")).unwrap();
    let g = gw.running().gateway.clone();
    let result = tokio::task::spawn_blocking(move || g.reload_by("test"))
        .await
        .unwrap();
    let errors = result.expect_err("a ratio over 1 is refused");
    assert!(
        errors.to_string().contains("tracing.sample_ratio"),
        "{errors}"
    );
    let a = get(&gw.url("/app/x")).await;
    assert!(
        a.json()["headers"]["traceparent"][0].is_string(),
        "still tracing"
    );
}
