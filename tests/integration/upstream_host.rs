//! The Host header an upstream sees: its own endpoint's (set once per endpoint at config
//! compile time), the client's with preserve_host, and the next endpoint's after a failover.

use crate::support;

use support::*;

#[tokio::test]
async fn upstream_sees_its_endpoint_or_the_clients_host() {
    let echo = Backend::echo("a").await;
    let dead = dead_addr().await;
    let gw = TestGateway::start(
        &config()
            .no_access_log()
            .upstream("one", &[echo.addr])
            .upstream("failover", &[dead, echo.addr])
            .route("own", "/own", "one")
            .route_with("kept", "/kept", "one", "preserve_host = true")
            .route("failover", "/failover", "failover")
            .build(),
    )
    .await;
    let client_host = format!("127.0.0.1:{}", gw.addr.port());
    let own = get(&gw.url("/own")).await.json();
    assert_eq!(
        own["headers"]["host"],
        serde_json::json!([echo.addr.to_string()])
    );
    assert_eq!(
        own["headers"]["x-forwarded-host"],
        serde_json::json!([client_host])
    );
    let kept = get(&gw.url("/kept")).await.json();
    assert_eq!(kept["headers"]["host"], serde_json::json!([client_host]));
    // The first endpoint refuses: the retry names the endpoint it really goes to.
    for _ in 0..2 {
        let a = get(&gw.url("/failover")).await;
        assert_eq!(a.status, 200);
        assert_eq!(
            a.json()["headers"]["host"],
            serde_json::json!([echo.addr.to_string()])
        );
    }
}
