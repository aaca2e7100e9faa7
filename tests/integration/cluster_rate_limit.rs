//! Cluster-scoped rate limits against a real redis-server (`bash .ci/deps` installs it): three
//! instances share one budget, keys stay independent and refill at the rate, a killed Redis is
//! survived in each `on_store_error` mode and sharing resumes after its restart, a Redis that
//! never answers costs at most the timeout before the backoff trips, reload keeps the
//! connection, and `portico check` rejects a cluster scope without a store or with a bad URL.

use crate::support;

use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use support::redis::{RedisServer, SilentRedis, eventually};
use support::*;

fn config(backend: &Backend, cluster: &str, policy: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = ""

[log]
access_log = false

[upstreams.echo]
endpoints = ["{}"]

{cluster}

[rate_limits.p]
key = "header:x-user"
scope = "cluster"
{policy}

[[routes]]
id = "api"
match = {{ path_prefix = "/api" }}
upstream = "echo"
rate_limit = "p"
"#,
        backend.addr
    )
}

fn cluster(url: &str, extra: &str) -> String {
    format!("[cluster]\nredis = \"{url}\"\n{extra}")
}

async fn get_user(gw: &TestGateway, user: &str) -> Answer {
    let req = Request::get(gw.url("/api")).header("x-user", user);
    send(req.body(Full::default()).unwrap()).await
}

/// A metric of an in-process gateway, read from its registry.
fn gauge(gw: &TestGateway, name: &str) -> f64 {
    let text = gw.running().gateway.runtime().metrics.encode();
    metric(&parse_metrics(&text), name, &[]).unwrap_or(0.0)
}

#[tokio::test]
async fn three_instances_share_one_budget() {
    let redis = RedisServer::start();
    let backend = Backend::echo("app").await;
    let text = config(
        &backend,
        &cluster(&redis.url(), "timeout = \"2s\"\ninstances = 3"),
        "rate = \"10/s\"\nburst = 10\nheaders = \"always\"",
    );
    let gws = [
        TestGateway::start(&text).await,
        TestGateway::start(&text).await,
        TestGateway::start(&text).await,
    ];
    // Warm each instance's connection so the burst below is not spread out by connects.
    for gw in &gws {
        assert_eq!(get_user(gw, "warm-up").await.status, 200);
    }
    let started = Instant::now();
    let answers =
        futures_util::future::join_all((0..60).map(|i| get_user(&gws[i % 3], "alice"))).await;
    let elapsed = started.elapsed();
    let admitted = answers.iter().filter(|a| a.status == 200).count();
    let refill = (elapsed.as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        (10..=10 + refill).contains(&admitted),
        "60 requests over 3 instances in {elapsed:?}: {admitted} admitted (a local limit would admit 30)"
    );
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(a.status, 429);
        assert_eq!(a.header("retry-after"), Some("1"));
        assert_eq!(a.header("ratelimit-policy"), Some("\"p\";q=10;w=1"));
        assert_eq!(a.header("ratelimit"), Some("\"p\";r=0;t=1"));
        assert_eq!(
            a.json()["type"],
            "https://portico.dev/problems/rate-limited"
        );
    }
    let per_instance: Vec<usize> = (0..3)
        .map(|k| {
            answers
                .iter()
                .enumerate()
                .filter(|(i, a)| i % 3 == k && a.status == 200)
                .count()
        })
        .collect();
    assert_eq!(per_instance.iter().sum::<usize>(), admitted);
    // Keys are hashed, prefixed and expire when idle (warm-up's may be gone already).
    let keys = redis.command(&["KEYS", "portico:rl:p:*"]).await;
    assert!(
        keys.starts_with("*1\r\n") || keys.starts_with("*2\r\n"),
        "{keys}"
    );
    assert!(
        !keys.contains("alice") && !keys.contains("warm"),
        "keys are hashed: {keys}"
    );
    let key = keys.lines().nth(2).unwrap();
    let ttl: i64 = redis.command(&["PTTL", key]).await[1..]
        .trim()
        .parse()
        .unwrap();
    assert!(
        (1..=1_100).contains(&ttl),
        "expires once full again: {ttl} ms"
    );
}

#[tokio::test]
async fn keys_are_independent_and_refill_at_the_rate_across_instances() {
    let redis = RedisServer::start();
    let backend = Backend::echo("app").await;
    let text = config(
        &backend,
        &cluster(&redis.url(), "timeout = \"2s\""),
        "rate = \"2/s\"\nburst = 2\nheaders = \"always\"",
    );
    let a = TestGateway::start(&text).await;
    let b = TestGateway::start(&text).await;
    let t0 = Instant::now();
    let first = get_user(&a, "u1").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit"), Some("\"p\";r=1;t=1"));
    assert_eq!(get_user(&b, "u1").await.status, 200);
    assert_eq!(get_user(&a, "u1").await.status, 429, "burst of 2 shared");
    assert_eq!(get_user(&b, "u1").await.status, 429);
    assert_eq!(get_user(&b, "u2").await.status, 200, "another key");
    assert_eq!(get_user(&a, "u2").await.status, 200);
    assert_eq!(get_user(&a, "u2").await.status, 429);

    // One cell comes back every 500 ms, wherever it is taken.
    assert!(
        eventually(Duration::from_secs(3), async || get_user(&b, "u1")
            .await
            .status
            == 200)
        .await,
        "u1 refills"
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(490),
        "no cell before the interval: {waited:?}"
    );
    // The second cell is due 1 s after t0; on a loaded box the poll may see the refill late.
    let second = get_user(&a, "u1").await.status;
    if t0.elapsed() < Duration::from_millis(950) {
        assert_eq!(second, 429, "only one cell came back");
    }
}

/// Kills Redis mid-run under `mode`, checks what requests get, restarts it and waits for
/// sharing to resume. Returns nothing; panics on any mismatch.
async fn survive_a_killed_redis(mode: &str) {
    let mut redis = RedisServer::start();
    let backend = Backend::echo("app").await;
    let timeout = Duration::from_millis(500);
    let text = config(
        &backend,
        &cluster(
            &redis.url(),
            "timeout = \"500ms\"\ninstances = 2\nerror_threshold = 2\nbackoff = \"300ms\"",
        ),
        &format!("rate = \"1/m\"\nburst = 4\non_store_error = \"{mode}\""),
    );
    let gw = TestGateway::start(&text).await;
    for _ in 0..4 {
        assert_eq!(get_user(&gw, "before").await.status, 200);
    }
    assert_eq!(get_user(&gw, "before").await.status, 429);
    assert_eq!(gauge(&gw, "portico_cluster_store_degraded"), 0.0);

    redis.kill();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let a = get_user(&gw, "during").await;
        let took = started.elapsed();
        assert!(
            took < timeout + Duration::from_millis(1000),
            "{mode}: a request took {took:?} with Redis down (timeout {timeout:?})"
        );
        if a.status == 503 {
            assert_eq!(
                a.json()["type"],
                "https://portico.dev/problems/rate-limit-unavailable"
            );
            assert_eq!(a.header("retry-after"), Some("1"));
        }
        statuses.push(a.status.as_u16());
    }
    let expected = match mode {
        // The local share: burst 4 / 2 instances.
        "local" => vec![200, 200, 429, 429, 429, 429],
        "allow" => vec![200; 6],
        "deny" => vec![503; 6],
        _ => unreachable!(),
    };
    assert_eq!(statuses, expected, "on_store_error = {mode}");
    assert_eq!(gauge(&gw, "portico_cluster_store_degraded"), 1.0);
    assert!(gauge(&gw, "portico_cluster_store_errors_total") >= 2.0);

    redis.restart();
    let resumed = eventually(Duration::from_secs(5), async || {
        get_user(&gw, "probe").await;
        gauge(&gw, "portico_cluster_store_degraded") == 0.0
    })
    .await;
    assert!(resumed, "{mode}: sharing resumes after Redis restarts");
    // Decided by Redis again: the whole burst of 4 (the local share would give 2), then 429.
    let after: Vec<u16> = futures_util::future::join_all((0..5).map(|_| get_user(&gw, "after")))
        .await
        .iter()
        .map(|a| a.status.as_u16())
        .collect();
    assert_eq!(
        after.iter().filter(|s| **s == 200).count(),
        4,
        "{mode}: {after:?}"
    );
    assert_eq!(
        after.iter().filter(|s| **s == 429).count(),
        1,
        "{mode}: {after:?}"
    );
}

#[tokio::test]
async fn killed_redis_falls_back_to_the_local_share() {
    survive_a_killed_redis("local").await;
}

#[tokio::test]
async fn killed_redis_with_allow_admits() {
    survive_a_killed_redis("allow").await;
}

#[tokio::test]
async fn killed_redis_with_deny_refuses_with_503() {
    survive_a_killed_redis("deny").await;
}

#[tokio::test]
async fn a_silent_redis_costs_the_timeout_then_trips_the_backoff() {
    let silent = SilentRedis::start().await;
    let backend = Backend::echo("app").await;
    let text = config(
        &backend,
        &cluster(
            &format!("redis://{}", silent.addr),
            "timeout = \"300ms\"\nerror_threshold = 3\nbackoff = \"60s\"",
        ),
        "rate = \"100/s\"\non_store_error = \"allow\"",
    );
    let gw = TestGateway::start(&text).await;
    for i in 0..3 {
        let started = Instant::now();
        assert_eq!(get_user(&gw, "u").await.status, 200);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
            "request {i} waited for the store up to its timeout: {took:?}"
        );
    }
    assert_eq!(gauge(&gw, "portico_cluster_store_errors_total"), 3.0);
    assert_eq!(gauge(&gw, "portico_cluster_store_degraded"), 1.0);
    for _ in 0..5 {
        assert_eq!(get_user(&gw, "u").await.status, 200);
    }
    assert_eq!(
        gauge(&gw, "portico_cluster_store_errors_total"),
        3.0,
        "no store calls while backing off"
    );
}

#[tokio::test]
async fn reload_keeps_the_connection_unless_cluster_changes() {
    let redis = RedisServer::start();
    let backend = Backend::echo("app").await;
    let policy = "rate = \"1/m\"\nburst = 1";
    let text = config(&backend, &cluster(&redis.url(), "timeout = \"2s\""), policy);
    let gw = TestGateway::start(&text).await;
    assert_eq!(get_user(&gw, "u").await.status, 200);
    let before = gw.running().gateway.runtime();

    // Another route timeout: store and policy are kept.
    std::fs::write(
        gw.config_path(),
        text.replace(
            "upstream = \"echo\"",
            "upstream = \"echo\"\ntimeout = \"3s\"",
        ),
    )
    .unwrap();
    let after = gw.running().gateway.reload().unwrap();
    let (c1, c2) = (
        before.cluster.as_ref().unwrap(),
        after.cluster.as_ref().unwrap(),
    );
    assert!(std::sync::Arc::ptr_eq(c1, c2), "connection kept");
    assert!(std::sync::Arc::ptr_eq(
        &before.rate_limits["p"],
        &after.rate_limits["p"]
    ));
    assert_eq!(
        get_user(&gw, "u").await.status,
        429,
        "the key lives in Redis"
    );

    // A changed [cluster] builds a new store; the key is still in Redis.
    std::fs::write(
        gw.config_path(),
        text.replace("timeout = \"2s\"", "timeout = \"3s\""),
    )
    .unwrap();
    let changed = gw.running().gateway.reload().unwrap();
    assert!(!std::sync::Arc::ptr_eq(
        c1,
        changed.cluster.as_ref().unwrap()
    ));
    assert_eq!(get_user(&gw, "u").await.status, 429);
}

#[tokio::test]
async fn rediss_with_a_private_ca_and_a_password() {
    let pki = support::tls::Pki::new("redis test CA");
    let leaf = pki.server(&["127.0.0.1", "localhost"]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "redis.pem", &leaf.cert_pem);
    write(dir.path(), "redis.key", &leaf.key_pem);
    let redis = RedisServer::start_tls(
        &dir.path().join("redis.pem"),
        &dir.path().join("redis.key"),
        "s3cret",
    );
    let backend = Backend::echo("app").await;
    let url = format!("rediss://:s3cret@127.0.0.1:{}", redis.port);
    let policy = "rate = \"1/m\"\nburst = 2\non_store_error = \"deny\"";
    let store = cluster(
        &url,
        "timeout = \"2s\"\nca_file = \"ca.pem\"\nerror_threshold = 1",
    );
    let gw = TestGateway::start_with_files(
        &config(&backend, &store, policy),
        &[("ca.pem", &pki.ca_pem)],
    )
    .await;
    // Decided by the TLS store: a failure would be 503 (deny).
    assert_eq!(get_user(&gw, "u").await.status, 200);
    assert_eq!(get_user(&gw, "u").await.status, 200);
    assert_eq!(get_user(&gw, "u").await.status, 429);
    assert_eq!(gauge(&gw, "portico_cluster_store_errors_total"), 0.0);

    // Without the private CA the server is not trusted; a wrong password is refused: both 503.
    for store in [
        cluster(&url, "timeout = \"2s\"\nerror_threshold = 1"),
        cluster(
            &url.replace("s3cret", "wrong"),
            "timeout = \"2s\"\nca_file = \"ca.pem\"\nerror_threshold = 1",
        ),
    ] {
        let gw = TestGateway::start_with_files(
            &config(&backend, &store, policy),
            &[("ca.pem", &pki.ca_pem)],
        )
        .await;
        assert_eq!(get_user(&gw, "v").await.status, 503, "{store}");
        assert_eq!(gauge(&gw, "portico_cluster_store_degraded"), 1.0);
    }
}

#[test]
fn check_rejects_cluster_scope_without_a_store_and_bad_urls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let run = |text: &str| {
        std::fs::write(&path, text).unwrap();
        portico_cli(&["check", "--config", path.to_str().unwrap()])
    };
    let base = "[upstreams.echo]\nendpoints = [\"127.0.0.1:9\"]\n\n[rate_limits.p]\nrate = \"1/s\"\nkey = \"ip\"\nscope = \"cluster\"\n";
    let (code, _, err) = run(base);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "gateway.toml:7:9: rate_limits.p.scope: scope = \"cluster\" needs a [cluster] table"
        ),
        "{err}"
    );

    let (code, _, err) = run(&format!(
        "{base}\n[cluster]\nredis = \"http://u:hunter2@cache:6379\"\n"
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains("gateway.toml:10:9: cluster.redis: bad store URL"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "passwords stay out of messages: {err}"
    );

    let (code, _, err) = run(&format!(
        "{base}on_store_error = \"maybe\"\n\n[cluster]\nredis = \"redis://127.0.0.1:6379\"\ntimeout = \"soon\"\n"
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains("rate_limits.p.on_store_error: unknown value \"maybe\""),
        "{err}"
    );
    assert!(err.contains("cluster.timeout"), "{err}");

    let (code, _, err) = run(&format!(
        "{base}\n[cluster]\nredis = \"redis://127.0.0.1:6379\"\npassword_env = \"PORTICO_TEST_NO_SUCH_VAR\"\n"
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "cluster.password_env: environment variable PORTICO_TEST_NO_SUCH_VAR is not set"
        ),
        "{err}"
    );

    let (code, out, err) = run(&format!(
        "{base}\n[cluster]\nredis = \"redis://127.0.0.1:6379\"\ninstances = 3\n"
    ));
    assert_eq!(code, 0, "{out}{err}");
}
