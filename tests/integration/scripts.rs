//! Programmable phases: sandboxed Luau scripts on routes and BFF endpoints, against a real
//! gateway and real backends on 127.0.0.1:0. Covers the request edits that reach the backend,
//! short-circuit answers, response and body transforms, BFF `on_aggregate`, read-only claims,
//! the time and memory limits, the sandbox, `portico check` errors, hot reload, and VMs that
//! share nothing across worker threads.

use crate::support;

use std::time::Duration;

use http::Request;
use http_body_util::Full;
use serde_json::json;
use support::*;

const SECRET: &str = "scripts-test-secret-long-enough-for-hs256!";

/// A gateway with one echo upstream `app`, the routes in `routes` and the scripts in `files`
/// (written under `scripts/`, each declared as `[scripts.STEM]`).
async fn gateway(backend: &Backend, routes: &str, files: &[(&str, &str)]) -> TestGateway {
    let cfg = config(backend, routes, files, "");
    let files: Vec<(String, &str)> = files
        .iter()
        .map(|(name, text)| (format!("scripts/{name}.lua"), *text))
        .chain([("t.secret".to_string(), SECRET)])
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    TestGateway::start_with_files(&cfg, &files).await
}

fn config(backend: &Backend, routes: &str, files: &[(&str, &str)], extra: &str) -> String {
    let mut cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[upstreams.app]
endpoints = ["{}"]

[upstreams.other]
endpoints = ["{}"]

[auth.providers.t]
issuer = "https://t.test"
audiences = ["portico"]
algorithms = ["HS256"]
secret_file = "t.secret"
{extra}
"#,
        backend.addr, backend.addr
    );
    for (name, _) in files {
        cfg.push_str(&format!(
            "\n[scripts.{name}]\nfile = \"scripts/{name}.lua\"\n"
        ));
    }
    cfg.push_str(routes);
    cfg
}

fn token(claims: serde_json::Value) -> String {
    let mut c = json!({"iss": "https://t.test", "aud": "portico", "exp": unix_now() + 600});
    c.as_object_mut()
        .unwrap()
        .extend(claims.as_object().unwrap().clone());
    hs256(SECRET, &c)
}

async fn get_h(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::default()).unwrap()).await
}

fn assert_script_error(a: &Answer) {
    assert_eq!(a.status, 500, "{:?}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    let body = a.json();
    assert_eq!(body["type"], "https://portico.dev/problems/script-error");
    let text = body.to_string();
    assert!(
        !text.contains(".lua") && !text.contains("attempt"),
        "no Lua details reach the client: {text}"
    );
}

async fn errors(gw: &TestGateway, script: &str, kind: &str) -> f64 {
    let s = scrape(gw.running()).await;
    metric(
        &s,
        "portico_script_errors_total",
        &[("script", script), ("kind", kind)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn header_edits_and_path_rewrite_reach_the_backend() {
    let backend = Backend::echo("app").await;
    let script = r#"
function on_request(req, ctx)
  req:set_header("x-added", "yes " .. req.method)
  req:add_header("x-list", "b")
  req:remove_header("x-drop")
  req.path = "/v2" .. req.path
  req.query = "page=" .. (string.match(req.query or "", "p=(%d+)") or "1")
end
"#;
    let gw = gateway(
        &backend,
        r#"
[[routes]]
id = "r"
match = { path_prefix = "/r" }
upstream = "app"
scripts = ["edit"]
"#,
        &[("edit", script)],
    )
    .await;
    let a = get_h(
        &gw.url("/r/items?p=7"),
        &[("x-drop", "secret"), ("x-list", "a")],
    )
    .await;
    assert_eq!(a.status, 200);
    let seen = a.json();
    assert_eq!(seen["path"], "/v2/r/items");
    assert_eq!(seen["query"], "page=7");
    assert_eq!(seen["headers"]["x-added"], json!(["yes GET"]));
    assert_eq!(seen["headers"]["x-list"], json!(["a", "b"]));
    assert!(seen["headers"].get("x-drop").is_none(), "{seen}");

    let s = scrape(gw.running()).await;
    assert_eq!(
        metric(&s, "portico_script_calls_total", &[("script", "edit")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_script_may_pick_another_upstream() {
    let app = Backend::echo("app").await;
    let script = r#"
function on_request(req, ctx)
  if req:header("x-canary") == "1" then req.upstream = "canary" end
  if req:header("x-canary") == "bogus" then req.upstream = "nope" end
end
"#;
    let canary = Backend::echo("canary").await;
    let routes = format!(
        r#"
[upstreams.canary]
endpoints = ["{}"]

[[routes]]
id = "r"
match = {{ path_prefix = "/r" }}
upstream = "app"
scripts = ["pick"]
"#,
        canary.addr
    );
    let gw = gateway(&app, &routes, &[("pick", script)]).await;
    assert_eq!(get(&gw.url("/r")).await.json()["backend"], "app");
    let a = get_h(&gw.url("/r"), &[("x-canary", "1")]).await;
    assert_eq!(a.json()["backend"], "canary");
    assert_script_error(&get_h(&gw.url("/r"), &[("x-canary", "bogus")]).await);
    assert_eq!(errors(&gw, "pick", "bad-value").await, 1.0);
}

#[tokio::test]
async fn tenant_check_answers_403_problem_json_and_the_backend_sees_nothing() {
    let backend = Backend::echo("app").await;
    let gw = gateway(
        &backend,
        r#"
[[routes]]
id = "orders"
match = { path_prefix = "/api/orders" }
upstream = "app"
auth = { provider = "t" }
scripts = ["tenant"]
"#,
        &[("tenant", include_str!("../../scripts/tenant.lua"))],
    )
    .await;
    let bearer = |claims| format!("Bearer {}", token(claims));

    let a = get_h(
        &gw.url("/api/orders/acme/1"),
        &[(
            "authorization",
            &bearer(json!({"sub": "u1", "tenant": "globex"})),
        )],
    )
    .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    let p = a.json();
    assert_eq!(p["status"], 403);
    assert_eq!(p["detail"], "This token may not read tenant acme.");
    assert_eq!(p["type"], "https://portico.dev/problems/script-answer");
    assert_eq!(p["request_id"], a.header("x-request-id").unwrap());
    assert_eq!(backend.hits(), 0, "a short-circuit forwards nothing");

    // The right tenant passes; on_response reads ctx.vars set by on_request.
    let a = get_h(
        &gw.url("/api/orders/acme/1"),
        &[(
            "authorization",
            &bearer(json!({"sub": "u1", "tenant": "acme"})),
        )],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["headers"]["x-tenant"], json!(["acme"]));
    assert_eq!(
        a.header("x-tenant"),
        Some("acme"),
        "ctx.vars crossed phases"
    );
    assert_eq!(backend.hits(), 1);
}

#[tokio::test]
async fn a_typed_short_circuit_answer_is_sent_as_is() {
    let backend = Backend::echo("app").await;
    let script = r#"
function on_request(req, ctx)
  if req.path == "/r/text" then
    return { status = 200, headers = { ["content-type"] = "text/plain", ["x-from"] = "lua" }, body = "hi" }
  end
  if req.path == "/r/json" then
    return { status = 201, body = { ok = true, items = { 1, 2 }, none = {} } }
  end
  if req.path == "/r/bad" then
    return "nope"
  end
end
"#;
    let gw = gateway(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nscripts = [\"s\"]\n",
        &[("s", script)],
    )
    .await;
    let a = get(&gw.url("/r/text")).await;
    assert_eq!(
        (a.status.as_u16(), a.header("x-from"), &a.body[..]),
        (200, Some("lua"), &b"hi"[..])
    );
    let a = get(&gw.url("/r/json")).await;
    assert_eq!(a.status, 201);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.json(), json!({"ok": true, "items": [1, 2], "none": {}}));
    assert_script_error(&get(&gw.url("/r/bad")).await);
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn response_headers_are_transformed() {
    let backend = Backend::echo("app").await;
    let script = r#"
function on_response(resp, ctx)
  resp:remove_header("x-backend")
  resp:set_header("x-status-was", tostring(resp.status))
  resp:set_header("x-route", ctx.route)
  if resp.body ~= nil then error("body must not be buffered") end
  resp.status = 203
end
"#;
    let gw = gateway(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nscripts = [\"resp\"]\n",
        &[("resp", script)],
    )
    .await;
    let a = get(&gw.url("/r")).await;
    assert_eq!(a.status, 203);
    assert_eq!(a.header("x-backend"), None);
    assert_eq!(a.header("x-status-was"), Some("200"));
    assert_eq!(a.header("x-route"), Some("r"));
    assert_eq!(a.json()["path"], "/r", "the streamed body is untouched");
}

#[tokio::test]
async fn a_buffered_body_is_redacted() {
    let backend = Backend::start(|_req| async {
        json_response(
            200,
            json!({"user": {"name": "Ann", "email": "ann@example.com"}, "phone": "555"}),
        )
    })
    .await;
    let gw = gateway(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nscripts = [\"redact\"]\n",
        &[("redact", include_str!("../../scripts/redact.lua"))],
    )
    .await;
    let a = get(&gw.url("/r")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-redacted"), Some("1"));
    assert_eq!(
        a.json(),
        json!({"user": {"name": "Ann", "email": "***"}, "phone": "***"})
    );
    assert_eq!(
        a.header("content-length")
            .map(|n| n.parse::<usize>().unwrap()),
        Some(a.body.len())
    );
}

#[tokio::test]
async fn a_body_over_max_body_is_a_script_error() {
    let backend =
        Backend::start(|_req| async { json_response(200, json!({"x": "y".repeat(4096)})) }).await;
    let cfg = config(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nscripts = [\"redact\"]\n",
        &[],
        "[scripts.redact]\nfile = \"scripts/redact.lua\"\nmax_body = \"1KiB\"\n",
    );
    let gw = TestGateway::start_with_files(
        &cfg,
        &[
            (
                "scripts/redact.lua",
                include_str!("../../scripts/redact.lua"),
            ),
            ("t.secret", SECRET),
        ],
    )
    .await;
    assert_script_error(&get(&gw.url("/r")).await);
    assert_eq!(errors(&gw, "redact", "body-too-large").await, 1.0);
}

#[tokio::test]
async fn bff_on_aggregate_renames_and_removes_keys() {
    let users =
        Backend::start(|_req| async { json_response(200, json!({"id": 7, "name": "Ann"})) }).await;
    let script = r#"
function on_request(req, ctx)
  ctx.vars.started = true
end
function on_aggregate(result, ctx)
  result.user = result.profile
  result.profile = nil
  result.secret = nil
  result.missing = {}
  for name, reason in ctx.partial or {} do
    table.insert(result.missing, name .. "=" .. reason)
  end
  result.saw_request = ctx.vars.started
end
"#;
    let profile = r#"
name = "web"
mount = "/web"
scripts = ["agg"]

[[endpoints]]
path = "/home"
  [[endpoints.parts]]
  name = "profile"
  upstream = "app"
  path = "/users/1"
  [[endpoints.parts]]
  name = "secret"
  upstream = "app"
  path = "/secret"
  [[endpoints.parts]]
  name = "broken"
  upstream = "other"
  path = "/x"
"#;
    let cfg = config(&users, "", &[("agg", script)], "").replace(
        &format!("[upstreams.other]\nendpoints = [\"{}\"]", users.addr),
        &format!("[upstreams.other]\nendpoints = [\"{}\"]", dead_addr().await),
    );
    let gw = TestGateway::start_with_files(
        &cfg,
        &[
            ("scripts/agg.lua", script),
            ("bff/web.toml", profile),
            ("t.secret", SECRET),
        ],
    )
    .await;
    let a = get(&gw.url("/web/home")).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let body = a.json();
    assert_eq!(body["user"], json!({"id": 7, "name": "Ann"}));
    assert!(
        body.get("profile").is_none() && body.get("secret").is_none(),
        "{body}"
    );
    assert_eq!(body["saw_request"], true);
    assert_eq!(body["missing"], json!(["broken=unreachable"]), "{body}");
    assert_eq!(
        body["_partial"],
        json!({"broken": "unreachable"}),
        "the report stays"
    );
}

#[tokio::test]
async fn claims_are_visible_and_read_only() {
    let backend = Backend::echo("app").await;
    let script = r#"
function on_request(req, ctx)
  req:set_header("x-sub", ctx.claims.sub)
  req:set_header("x-role", ctx.claims.roles[1])
  if req.path == "/r/write" then ctx.claims.sub = "admin" end
  if req.path == "/r/deep" then ctx.claims.roles[1] = "admin" end
end
"#;
    let gw = gateway(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nauth = { provider = \"t\" }\nscripts = [\"claims\"]\n",
        &[("claims", script)],
    )
    .await;
    let auth = format!(
        "Bearer {}",
        token(json!({"sub": "u9", "roles": ["reader"]}))
    );
    let a = get_h(&gw.url("/r/read"), &[("authorization", &auth)]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["headers"]["x-sub"], json!(["u9"]));
    assert_eq!(a.json()["headers"]["x-role"], json!(["reader"]));
    for path in ["/r/write", "/r/deep"] {
        assert_script_error(&get_h(&gw.url(path), &[("authorization", &auth)]).await);
    }
    assert_eq!(errors(&gw, "claims", "runtime").await, 2.0);
    assert_eq!(backend.hits(), 1);
}

#[tokio::test]
async fn an_infinite_loop_is_cut_and_the_next_request_is_served() {
    let backend = Backend::echo("app").await;
    let script = r#"
function on_request(req, ctx)
  if req.path == "/r/loop" then
    while true do end
  end
  if req.path == "/r/sneaky" then
    -- pcall cannot swallow the cut
    while true do pcall(function() while true do end end) end
  end
end
"#;
    let gw = gateway(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nscripts = [\"spin\"]\n",
        &[("spin", script)],
    )
    .await;
    for path in ["/r/loop", "/r/sneaky"] {
        let a = tokio::time::timeout(Duration::from_secs(10), get(&gw.url(path)))
            .await
            .expect("the loop was cut");
        assert_script_error(&a);
    }
    assert_eq!(errors(&gw, "spin", "budget").await, 2.0);
    assert_eq!(get(&gw.url("/r/ok")).await.status, 200);
    assert_eq!(backend.hits(), 1);
}

#[tokio::test]
async fn a_memory_bomb_is_cut_and_the_next_request_is_served() {
    let backend = Backend::echo("app").await;
    let script = r#"
local keep = {}
function on_request(req, ctx)
  if req.path == "/r/bomb" then
    local s = string.rep("x", 1024 * 1024)
    for i = 1, 100 do keep[i] = s .. i end
  end
  if req.path == "/r/big" then
    local s = string.rep("x", 64 * 1024 * 1024)
  end
end
"#;
    // A generous time budget, so the memory cap (16MiB by default) is what cuts.
    let cfg = config(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nscripts = [\"bomb\"]\n",
        &[],
        "[scripts.bomb]\nfile = \"scripts/bomb.lua\"\nbudget = \"1s\"\n",
    );
    let gw =
        TestGateway::start_with_files(&cfg, &[("scripts/bomb.lua", script), ("t.secret", SECRET)])
            .await;
    for path in ["/r/bomb", "/r/big"] {
        assert_script_error(&get(&gw.url(path)).await);
    }
    assert_eq!(errors(&gw, "bomb", "memory").await, 2.0);
    assert_eq!(get(&gw.url("/r/ok")).await.status, 200);
}

#[tokio::test]
async fn the_sandbox_has_no_os_io_require_or_loaders() {
    let backend = Backend::echo("app").await;
    let script = r#"
function on_request(req, ctx)
  local absent = {}
  for _, name in { "os", "io", "require", "loadstring", "load", "dofile", "debug", "getfenv", "setfenv", "print" } do
    if _G[name] == nil then table.insert(absent, name) end
  end
  req:set_header("x-absent", table.concat(absent, ","))
  req:set_header("x-exec", tostring((pcall(function() return os.execute("true") end))))
  req:set_header("x-open", tostring((pcall(function() return io.open("/etc/passwd") end))))
  req:set_header("x-require", tostring((pcall(function() return require("x") end))))
  req:set_header("x-string-lib", tostring(pcall(function() string.upper = nil end)))
  req:set_header("x-helpers", sha256("abc") .. " " .. base64.encode("hi") .. " " .. json.encode({ a = 1 }))
  req:set_header("x-hmac", hmac_sha256("key", "The quick brown fox jumps over the lazy dog"))
  req:set_header("x-now", tostring(now_ms() > 1.6e12))
end
"#;
    let gw = gateway(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nscripts = [\"sb\"]\n",
        &[("sb", script)],
    )
    .await;
    let seen = get(&gw.url("/r")).await.json();
    let h = |n: &str| seen["headers"][n][0].as_str().unwrap().to_owned();
    assert_eq!(
        h("x-absent"),
        "os,io,require,loadstring,load,dofile,debug,getfenv,setfenv,print"
    );
    assert_eq!(h("x-exec"), "false");
    assert_eq!(h("x-open"), "false");
    assert_eq!(h("x-require"), "false");
    assert_eq!(h("x-string-lib"), "false", "libraries are read-only");
    assert_eq!(
        h("x-helpers"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad aGk= {\"a\":1}"
    );
    assert_eq!(
        h("x-hmac"),
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
    assert_eq!(h("x-now"), "true");
}

#[tokio::test]
async fn a_hook_cannot_leave_globals_behind() {
    let backend = Backend::echo("app").await;
    let script = "function on_request(req, ctx)\n  seen = req.path\nend\n";
    let gw = gateway(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nscripts = [\"g\"]\n",
        &[("g", script)],
    )
    .await;
    assert_script_error(&get(&gw.url("/r")).await);
    assert_eq!(errors(&gw, "g", "runtime").await, 1.0);
}

#[test]
fn check_reports_script_errors_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = r#"
[server]
listen = "127.0.0.1:0"

[upstreams.app]
endpoints = ["127.0.0.1:9"]

[scripts.bad]
file = "scripts/bad.lua"

[scripts.typo]
file = "scripts/typo.lua"

[scripts.agg]
file = "scripts/agg.lua"

[scripts.shape]
file = "scripts/shape.lua"

[[routes]]
id = "r"
match = { path_prefix = "/r" }
upstream = "app"
scripts = ["bad", "nope", "agg"]
"#;
    write(dir.path(), "gateway.toml", cfg);
    write(
        dir.path(),
        "scripts/bad.lua",
        "function on_request(req, ctx)\n  local x = 1\n  x = = 2\nend\n",
    );
    write(
        dir.path(),
        "scripts/typo.lua",
        "-- misspelt\nfunction on_reqest(req, ctx)\nend\n",
    );
    write(
        dir.path(),
        "scripts/agg.lua",
        "function on_aggregate(result, ctx)\nend\n",
    );
    write(
        dir.path(),
        "scripts/shape.lua",
        "function on_request(req, ctx)\n  if req:header('x-a') then error('needs data') end\n  return 404\nend\n\nfunction on_response(resp, ctx)\n  return true\nend\n",
    );
    let path = dir.path().join("gateway.toml");
    let errs = portico::runtime::load(&path, None).unwrap_err().0;
    let shape: Vec<_> = errs
        .iter()
        .filter(|e| e.file.ends_with("scripts/shape.lua"))
        .map(|e| (e.line, e.message.clone()))
        .collect();
    assert_eq!(shape.len(), 2, "{errs:?}");
    assert_eq!(shape[0].0, 1);
    assert!(
        shape[0].1.contains("on_request returns a bad answer"),
        "{shape:?}"
    );
    assert_eq!(shape[1].0, 6);
    assert!(
        shape[1].1.contains("on_response must return nothing"),
        "{shape:?}"
    );
    let bad = errs
        .iter()
        .find(|e| e.file.ends_with("scripts/bad.lua"))
        .unwrap_or_else(|| panic!("{errs:?}"));
    assert_eq!((bad.line, bad.col), (3, 7), "{bad}");
    assert_eq!(bad.key, "scripts.bad");
    let typo = errs
        .iter()
        .find(|e| e.file.ends_with("scripts/typo.lua"))
        .unwrap_or_else(|| panic!("{errs:?}"));
    assert_eq!(typo.line, 2);
    assert!(typo.message.contains("on_reqest"), "{typo}");
    let unknown = errs
        .iter()
        .find(|e| e.key == "routes[0].scripts[1]")
        .unwrap_or_else(|| panic!("{errs:?}"));
    assert!(
        unknown.message.contains("unknown script `nope`"),
        "{unknown}"
    );
    assert_eq!(unknown.file, path);
    let line = cfg
        .lines()
        .position(|l| l.starts_with("scripts ="))
        .unwrap()
        + 1;
    assert_eq!(unknown.line, line);
    let agg = errs
        .iter()
        .find(|e| e.key == "routes[0].scripts[2]")
        .unwrap_or_else(|| panic!("{errs:?}"));
    assert!(agg.message.contains("on_aggregate"), "{agg}");

    let (code, _, stderr) = portico_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("scripts/bad.lua:3:7: scripts.bad:"),
        "{stderr}"
    );
}

#[tokio::test]
async fn editing_a_script_hot_reloads_it_and_a_broken_edit_keeps_the_old_one() {
    let backend = Backend::echo("app").await;
    let v = |n: u32| {
        format!("function on_request(req, ctx)\n  req:set_header(\"x-v\", \"{n}\")\nend\n")
    };
    let gw = gateway(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nscripts = [\"v\"]\n",
        &[("v", &v(1))],
    )
    .await;
    let script_path = gw.dir.path().join("scripts/v.lua");
    let rt = gw.running().gateway.runtime();
    assert!(rt.sources.contains(&script_path), "{:?}", rt.sources);
    let version = rt.version.clone();
    drop(rt);
    let seen = |a: Answer| a.json()["headers"]["x-v"][0].as_str().unwrap().to_owned();
    assert_eq!(seen(get(&gw.url("/r")).await), "1");

    let mut reloads = gw.running().gateway.reload_status();
    save_atomically(&script_path, &v(2));
    next_reload(&mut reloads, Duration::from_secs(5)).await;
    assert_ne!(gw.running().gateway.runtime().version, version);
    assert_eq!(seen(get(&gw.url("/r")).await), "2");

    save_atomically(
        &script_path,
        "function on_request(req, ctx)\n  req:set_header(\n",
    );
    let status = next_reload(&mut reloads, Duration::from_secs(5)).await;
    assert!(format!("{status:?}").contains("v.lua"), "{status:?}");
    assert_eq!(seen(get(&gw.url("/r")).await), "2", "the old script stays");
}

/// Each worker thread runs its own VM: a module-level counter counts only its own thread's
/// calls, and `ctx.vars` never leaks between concurrent requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_share_no_script_state() {
    let backend = Backend::echo("app").await;
    let script = r#"
local vm = tostring({})
local calls = 0
function on_request(req, ctx)
  calls += 1
  ctx.vars.id = req:header("x-id")
  ctx.vars.call = calls
  ctx.vars.vm = vm
end
function on_response(resp, ctx)
  -- on_response may run on the other thread: the request's VM travels in ctx.vars.
  resp:set_header("x-id", ctx.vars.id)
  resp:set_header("x-vm", ctx.vars.vm)
  resp:set_header("x-call", tostring(ctx.vars.call))
end
"#;
    let gw = gateway(
        &backend,
        "[[routes]]\nid = \"r\"\nmatch = { path_prefix = \"/r\" }\nupstream = \"app\"\nscripts = [\"c\"]\n",
        &[("c", script)],
    )
    .await;
    let url = gw.url("/r");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..25 {
                let id = format!("{t}-{i}");
                let a = get_h(&url, &[("x-id", &id)]).await;
                assert_eq!(
                    a.header("x-id"),
                    Some(id.as_str()),
                    "vars stay with their request"
                );
                out.push((
                    a.header("x-vm").unwrap().to_owned(),
                    a.header("x-call").unwrap().parse::<u32>().unwrap(),
                ));
            }
            out
        }));
    }
    let mut per_vm: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
    for t in tasks {
        for (vm, call) in t.await.unwrap() {
            per_vm.entry(vm).or_default().push(call);
        }
    }
    assert!(per_vm.len() <= 2, "one VM per worker thread: {per_vm:?}");
    let mut total = 0;
    for calls in per_vm.values_mut() {
        calls.sort_unstable();
        let expect: Vec<u32> = (1..=calls.len() as u32).collect();
        assert_eq!(*calls, expect, "each VM's calls are its own, one at a time");
        total += calls.len();
    }
    assert_eq!(total, 200);
}

/// The same, without the scheduler's say: two OS threads run one chain at the same time, many
/// times, each on its own VM (a module-level counter per thread counts exactly its own calls).
#[test]
fn two_threads_run_scripts_concurrently_on_their_own_vms() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = r#"
[server]
listen = "127.0.0.1:0"
[upstreams.app]
endpoints = ["127.0.0.1:9"]
[scripts.c]
file = "c.lua"
[[routes]]
id = "r"
match = { path_prefix = "/r" }
upstream = "app"
scripts = ["c"]
"#;
    write(dir.path(), "gateway.toml", cfg);
    write(
        dir.path(),
        "c.lua",
        "local n = 0\nfunction on_request(req, ctx)\n  n += 1\n  ctx.vars.mine = req:header(\"x-t\")\n  req:set_header(\"x-n\", tostring(n))\nend\n",
    );
    let rt = std::sync::Arc::new(
        portico::runtime::load(&dir.path().join("gateway.toml"), None).unwrap(),
    );
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (rt, barrier) = (rt.clone(), barrier.clone());
            std::thread::spawn(move || {
                let chain = rt.routes.routes()[0].scripts.as_ref().unwrap();
                barrier.wait();
                for i in 1..=2000u32 {
                    let (mut parts, ()) = Request::get("/r")
                        .header("x-t", t.to_string())
                        .body(())
                        .unwrap()
                        .into_parts();
                    let info = portico::script::RequestInfo::new(
                        &None,
                        &http::HeaderValue::from_static("id"),
                        [127, 0, 0, 1].into(),
                        None,
                    );
                    let mut s = portico::script::Session::new(chain, info);
                    assert!(matches!(
                        s.on_request(&mut parts, None).unwrap(),
                        portico::script::Flow::Continue(None)
                    ));
                    assert_eq!(parts.headers["x-n"], i.to_string().as_str());
                    assert_eq!(s.vars, Some(json!({"mine": t.to_string()})));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
