//! BFF profiles end to end: the shipped web/mobile/iot profiles against the demo upstreams,
//! profile selection (mount, x-client, User-Agent, default, unknown), and profile reloads.

use crate::support;

use serde_json::json;
use support::*;

const DEV_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// gateway.toml for the demo upstreams and the dev provider the shipped mobile profile
/// authenticates with (secret in a file), plus `extra` (e.g. `[bff]`).
async fn demo_config(extra: &str) -> String {
    config()
        .toml(&demo_upstreams().await)
        .provider(
            "dev",
            "https://auth.portico.local",
            &["HS256"],
            "secret_file = \"dev.secret\"\nforward_claims = { sub = \"x-user-id\" }",
        )
        .toml(extra)
        .build()
}

/// `Bearer TOKEN` for `sub`, signed by the gateway's dev provider.
fn bearer(gw: &TestGateway, sub: &str) -> String {
    let rt = gw.running().gateway.runtime();
    let dev = rt.auth.providers.get("dev").unwrap();
    let token = dev.mint(&portico::filter::auth::MintOptions {
        sub: sub.into(),
        ttl: std::time::Duration::from_secs(600),
        ..Default::default()
    });
    format!("Bearer {}", token.unwrap())
}

async fn shipped_gateway(bff_table: &str) -> TestGateway {
    let mut files = shipped_profiles();
    files.push(("dev.secret".into(), DEV_SECRET.into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    TestGateway::start_with_files(&demo_config(bff_table).await, &refs).await
}

#[tokio::test]
async fn three_profiles_give_three_shapes_from_the_same_backends() {
    let gw = shipped_gateway("").await;

    let web = get(&gw.url("/web/home?user=42")).await;
    assert_eq!(web.status, 200, "{:?}", web.body);
    assert_eq!(web.header("content-type"), Some("application/json"));
    assert_eq!(web.header("portico-partial"), None);
    let w = web.json();
    let profile = w["profile"].as_object().unwrap();
    let mut keys: Vec<&str> = profile.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "address",
            "avatar_url",
            "email",
            "id",
            "locale",
            "name",
            "segment"
        ]
    );
    assert_eq!(
        w["profile"]["address"].as_object().unwrap().len(),
        2,
        "city and country only"
    );
    assert_eq!(w["orders"]["items"].as_array().unwrap().len(), 8);
    assert_eq!(w["orders"]["total_count"], 8);
    assert!(
        w["orders"]["items"][0].get("lines").is_none(),
        "not in fields"
    );
    let recs = w["recommendations"]["items"].as_array().unwrap();
    assert_eq!(recs.len(), 8, "max_items");
    assert!(
        recs[0].get("image").is_some() && recs[0].get("image_url").is_none(),
        "renamed"
    );
    assert!(recs[0].get("score").is_none());
    // The recommendations came for the segment the profile part returned.
    let segment = w["profile"]["segment"].as_str().unwrap();
    assert!(recs[0]["id"].as_str().unwrap().starts_with(segment));
    let timing = web.header("server-timing").unwrap();
    for part in [
        "profile;dur=",
        "orders;dur=",
        "recommendations;dur=",
        "total;dur=",
    ] {
        assert!(timing.contains(part), "{timing}");
    }

    let auth = bearer(&gw, "42");
    let mobile = get_with(&gw.url("/mobile/home"), &[("authorization", &auth)])
        .await
        .json();
    assert_eq!(mobile["profile"].as_object().unwrap().len(), 3);
    assert_eq!(mobile["profile"]["id"], "42");
    assert_eq!(mobile["orders"]["items"].as_array().unwrap().len(), 5);
    assert_eq!(mobile["orders"]["items"][0].as_object().unwrap().len(), 2);
    assert_eq!(
        mobile["recommendations"]["items"].as_array().unwrap().len(),
        5
    );

    let iot = get(&gw.url("/iot/home?user=42")).await.json();
    assert_eq!(
        iot,
        json!({"id": "42", "segment": segment, "open_orders": 8}),
        "flattened and renamed"
    );
    assert!(web.body.len() > 4 * serde_json::to_vec(&mobile).unwrap().len() / 3);

    // Flattened required part plus a part that reads a field inside it.
    let order = get(&gw.url("/web/orders/42-1")).await;
    assert_eq!(order.status, 200);
    let o = order.json();
    assert_eq!(o["id"], "42-1");
    let sku = o["lines"][0]["sku"].as_str().unwrap();
    assert_eq!(o["product"]["id"], sku);
    assert_eq!(o["product"].as_object().unwrap().len(), 4);
}

#[tokio::test]
async fn client_selection_by_header_user_agent_and_default() {
    let gw = shipped_gateway("[bff]\ndefault_profile = \"web\"\n").await;
    let auth = bearer(&gw, "7");
    let auth = ("authorization", auth.as_str());
    let shape = |a: &Answer| {
        let v = a.json();
        if v.get("open_orders").is_some() {
            "iot"
        } else if v["profile"].as_object().is_some_and(|p| p.len() == 3) {
            "mobile"
        } else {
            "web"
        }
    };
    let home = gw.url("/home?user=7");
    assert_eq!(
        shape(&get_with(&home, &[("x-client", "mobile"), auth]).await),
        "mobile"
    );
    assert_eq!(shape(&get_with(&home, &[("x-client", "IoT")]).await), "iot");
    assert_eq!(shape(&get_with(&home, &[("x-client", "web")]).await), "web");
    // Unknown client, or none: the default profile.
    assert_eq!(
        shape(&get_with(&home, &[("x-client", "fridge")]).await),
        "web"
    );
    assert_eq!(shape(&get(&home).await), "web");
    // User-Agent patterns when no x-client is sent; x-client wins over them.
    let android = ("user-agent", "Mozilla/5.0 (Linux; Android 14; Pixel 8)");
    assert_eq!(shape(&get_with(&home, &[android, auth]).await), "mobile");
    assert_eq!(
        shape(&get_with(&home, &[("user-agent", "portico-iot/1.2")]).await),
        "iot"
    );
    assert_eq!(
        shape(&get_with(&home, &[android, ("x-client", "web")]).await),
        "web"
    );
    // A mount wins over the header.
    assert_eq!(
        shape(&get_with(&gw.url("/iot/home?user=7"), &[("x-client", "web")]).await),
        "iot"
    );
    // Unmounted paths no profile serves still go to the routes (none here: 404 no-route).
    let other = get_with(&gw.url("/api/nothing"), &[("x-client", "mobile")]).await;
    assert_eq!(other.status, 404);
    assert_eq!(
        other.json()["type"],
        "https://portico.dev/problems/no-route"
    );
    // A mounted prefix is owned by its profile: unknown path 404, wrong method 405.
    assert_eq!(get(&gw.url("/mobile/nope")).await.status, 404);
    let post = send(
        http::Request::post(gw.url("/mobile/home"))
            .header("authorization", auth.1)
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // HEAD is served by GET endpoints.
    let head = send(
        http::Request::head(gw.url("/mobile/home"))
            .header("authorization", auth.1)
            .body(http_body_util::Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn unknown_client_without_default_profile_is_a_404_problem() {
    let gw = shipped_gateway("").await;
    let a = get_with(&gw.url("/home?user=7"), &[("x-client", "fridge")]).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        a.json()["type"],
        "https://portico.dev/problems/unknown-client"
    );
    // No client named and no default: not a BFF request at all.
    let b = get(&gw.url("/home?user=7")).await;
    assert_eq!(b.json()["type"], "https://portico.dev/problems/no-route");
    // Known clients still work unmounted.
    assert_eq!(
        get_with(&gw.url("/home?user=7"), &[("x-client", "iot")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn missing_client_input_for_a_required_part_is_a_400_naming_it() {
    let gw = shipped_gateway("").await;
    let a = get(&gw.url("/web/home")).await;
    assert_eq!(a.status, 400);
    let p = a.json();
    assert_eq!(p["type"], "https://portico.dev/problems/bff-missing-input");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("`profile`") && detail.contains("{query.user}"),
        "{detail}"
    );
}

#[tokio::test]
async fn an_authenticated_profile_checks_the_token_before_any_part_is_called() {
    let gw = shipped_gateway("").await;
    let url = gw.url("/mobile/home?user=1");
    // No token, a bad token: 401 with a challenge, and the query cannot stand in for the user.
    let none = get(&url).await;
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let forged = get_with(&url, &[("authorization", "Bearer not.a.token")]).await;
    assert_eq!(forged.status, 401);
    // The user comes from the verified `sub`; the shaped answer is that user's.
    let auth = bearer(&gw, "99");
    let ok = get_with(&url, &[("authorization", &auth)]).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let v = ok.json();
    assert_eq!(v["profile"]["id"], "99");
    assert_eq!(v["orders"]["items"][0]["id"], "99-1");
}

const EDITABLE: &str = r#"
name = "app"
mount = "/app"
[[endpoints]]
path = "/me"
  [[endpoints.parts]]
  name = "profile"
  upstream = "users"
  path = "/users/{query.user}"
  required = true
  fields = ["id"]
"#;

#[tokio::test]
async fn editing_a_bff_profile_changes_the_response() {
    let files = [("bff/app.toml", EDITABLE), ("dev.secret", DEV_SECRET)];
    let gw = TestGateway::start_with_files(&demo_config("").await, &files).await;
    let url = gw.url("/app/me?user=3");
    assert_eq!(get(&url).await.json(), json!({"profile": {"id": "3"}}));

    // The watcher (another component) reloads when any of these change.
    let rt = gw.running().gateway.runtime();
    let dir = gw.dir.path().join("bff");
    assert!(rt.sources.contains(&dir), "{:?}", rt.sources);
    assert!(
        rt.sources.contains(&dir.join("app.toml")),
        "{:?}",
        rt.sources
    );
    let version = rt.version.clone();

    write(
        gw.dir.path(),
        "bff/app.toml",
        &EDITABLE.replace(r#"["id"]"#, r#"["id", "name"]"#),
    );
    let reloaded = gw.running().gateway.reload_by("test").expect("reload");
    let summary = reloaded.summary.to_string();
    assert!(summary.contains("profiles +0 -0 ~1"), "{summary}");
    let next = reloaded.runtime;
    assert_ne!(next.version, version, "profile text is part of the version");
    let v = get(&url).await.json();
    assert_eq!(v["profile"].as_object().unwrap().len(), 2, "{v}");

    // Counters of an unchanged endpoint carry over the reload.
    let part = |rt: &portico::runtime::Runtime| {
        rt.bff.profile("app").unwrap().endpoints[0].parts[0]
            .stats
            .clone()
    };
    let ok = part(&next).count(portico::bff::metrics::Outcome::Ok);
    assert_eq!(ok, 2, "both requests counted on the same counters");
    let text = next.metrics.encode();
    for series in [
        r#"portico_bff_parts_total{profile="app",endpoint="GET /me",part="profile",outcome="ok"} 2"#,
        r#"portico_bff_responses_total{profile="app",endpoint="GET /me",result="complete"} 2"#,
        r#"portico_requests_total{route="app GET /me",method="GET",code="2xx"} 2"#,
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }

    // A broken edit is refused with file:line:col and the old profile keeps serving.
    write(
        gw.dir.path(),
        "bff/app.toml",
        &EDITABLE.replace("upstream = \"users\"", "upstream = \"nope\""),
    );
    let err = gw.running().gateway.reload().unwrap_err().to_string();
    assert!(
        err.contains("app.toml:8:14") && err.contains("unknown upstream `nope`"),
        "{err}"
    );
    assert_eq!(
        get(&url).await.json()["profile"].as_object().unwrap().len(),
        2
    );

    // A new profile file is picked up; a removed one goes away.
    write(
        gw.dir.path(),
        "bff/two.toml",
        &EDITABLE
            .replace("\"app\"", "\"two\"")
            .replace("/app", "/two"),
    );
    std::fs::remove_file(dir.join("app.toml")).unwrap();
    gw.running().gateway.reload().expect("reload");
    assert_eq!(get(&gw.url("/two/me?user=3")).await.status, 200);
    assert_eq!(get(&url).await.status, 404);
}

#[test]
fn shipped_config_passes_check() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml");
    let (code, out, err) = portico_cli(&["check", "--config", config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 BFF profiles"), "{out}");
    let (code, out, _) = portico_cli(&["routes", "--config", config]);
    assert_eq!(code, 0);
    assert!(out.contains("mobile\t/mobile\tGET\t/home\t250ms"), "{out}");
}
