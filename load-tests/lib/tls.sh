# shellcheck shell=bash
# TLS helpers for the load tests: an ECDSA P-256 test certificate (the same for every proxy)
# and Portico with a `[server.tls]` listener. Source after lib/common.sh.

# Self-signed ECDSA P-256 certificate for 127.0.0.1 and localhost, in $WORK.
# Sets CERT, KEY and CERT_BUNDLE (cert + key in one file, as haproxy wants it).
make_cert() {
    ensure_cmd openssl || ensure_pkg openssl openssl
    CERT=$WORK/api.pem
    KEY=$WORK/api.key
    CERT_BUNDLE=$WORK/api-bundle.pem
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$KEY" -out "$CERT" >/dev/null 2>&1 || die "openssl could not make a test certificate"
    # rustls wants PKCS#8 or SEC1; openssl writes PKCS#8 here already, keep it explicit.
    openssl pkcs8 -topk8 -nocrypt -in "$KEY" -out "$KEY.p8" 2>/dev/null && mv "$KEY.p8" "$KEY"
    cat "$CERT" "$KEY" >"$CERT_BUNDLE"
}

# Fails fast when this build of Portico has no `[server.tls]` (a build without HTTPS support).
# Usage: require_portico_feature WHAT CONFIG
require_portico_feature() {
    local what=$1 config=$2 out
    if ! out=$("$PORTICO" check --config "$config" 2>&1); then
        printf '%s\n' "$out" >&2
        die "portico check rejected the scenario's config (above): this build does not support $what yet, or the scenario is out of date with the config schema"
    fi
}

# Portico with a TLS listener (and its plain one) in front of $BACKEND_ADDR.
# Usage: start_portico_tls NAME true|false. Sets PORTICO_PID and PORTICO_TLS_PORT.
start_portico_tls() {
    local name=$1 access_log=$2
    local plain_port
    plain_port=$(free_port)
    PORTICO_TLS_PORT=$(free_port)
    cat >"$WORK/$name.toml" <<CONF
[server]
listen = "127.0.0.1:$plain_port"
admin_listen = ""
workers = 1

[server.tls]
listen = "127.0.0.1:$PORTICO_TLS_PORT"
certificates = [ { cert = "$CERT", key = "$KEY" } ]
min_version = "1.3"

[log]
access_log = $access_log

[upstreams.fixed]
endpoints = ["$BACKEND_ADDR"]
timeout = "5s"

[[routes]]
id = "fixed"
match = { path_prefix = "/" }
upstream = "fixed"
CONF
    require_portico_feature "[server.tls]" "$WORK/$name.toml"
    start_portico "$name" "$WORK/$name.toml" "$PORTICO_TLS_PORT"
}
