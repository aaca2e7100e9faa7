//! The `portico` command line as a user meets it: start-up errors that name the address and the
//! config key.

use crate::support;

use support::*;

#[test]
fn address_in_use_names_the_address_and_the_config_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[server]\nlisten = \"{addr}\"\nadmin_listen = \"\"\n");
    write(dir.path(), "gateway.toml", &text);
    let path = dir.path().join("gateway.toml");
    let (code, _out, err) = portico_cli(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&addr.to_string()), "{err}");
    assert!(err.contains("server.listen"), "{err}");
    drop(taken);
}

#[test]
fn a_taken_health_listen_address_names_its_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"\"\nhealth_listen = \"{addr}\"\n"
    );
    write(dir.path(), "gateway.toml", &text);
    let path = dir.path().join("gateway.toml");
    let (code, _out, err) = portico_cli(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{addr} (server.health_listen)")),
        "{err}"
    );
    drop(taken);
}

#[test]
fn version_prints_the_version_and_the_git_commit() {
    let (code, out, err) = portico_cli(&["--version"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("portico {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let commit = out.trim().rsplit(' ').next().unwrap().trim_end_matches(')');
    assert!(!commit.is_empty(), "{out}");
}

#[test]
fn completions_name_the_subcommands_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _portico"),
        ("zsh", "#compdef portico"),
        ("fish", "complete -c portico"),
    ] {
        let (code, out, err) = portico_cli(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: {out}");
        for sub in ["run", "demo", "check", "routes", "probe", "token"] {
            assert!(out.contains(sub), "{shell} lacks {sub}");
        }
    }
    let (code, _out, err) = portico_cli(&["completions", "tcsh"]);
    assert_ne!(code, 0);
    assert!(err.contains("tcsh"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_succeeds_on_a_ready_gateway_and_fails_otherwise() {
    let backend = Backend::echo("app").await;
    let cfg = support::config()
        .server("health_listen = \"127.0.0.1:0\"")
        .upstream("app", &[backend.addr])
        .build();
    let gw = ChildGateway::start(&cfg, &[]);
    let health = gw.health.unwrap();
    let ok_url = format!("http://{health}/readyz");
    let (code, out, err) = tokio::task::block_in_place(|| portico_cli(&["probe", &ok_url]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("200"), "{out}");
    // A 404 is a failure, and so is a port nobody listens on.
    let missing = format!("http://{health}/metrics");
    let (code, _, err) = tokio::task::block_in_place(|| portico_cli(&["probe", &missing]));
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/readyz", closed.local_addr().unwrap());
    drop(closed);
    let (code, _, err) =
        tokio::task::block_in_place(|| portico_cli(&["probe", "--timeout", "1s", &dead]));
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = portico_cli(&["probe", "ftp://x/"]);
    assert_eq!(code, 1);
    assert!(err.contains("bad URL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_flags_and_env_override_the_file() {
    let backend = Backend::echo("app").await;
    let cfg = support::config().upstream("app", &[backend.addr]).build();
    // The file turns the admin API off; the environment turns it (and the probes) on.
    let gw = ChildGateway::start(
        &cfg,
        &[
            ("PORTICO_ADMIN_LISTEN", "127.0.0.1:0"),
            ("PORTICO_HEALTH_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert_eq!(
        get(&gw.admin_url("/readyz")).await.status,
        http::StatusCode::OK
    );
    let health = gw
        .health
        .expect("health listener from PORTICO_HEALTH_LISTEN");
    assert_eq!(
        get(&format!("http://{health}/healthz")).await.status,
        http::StatusCode::OK
    );
}
