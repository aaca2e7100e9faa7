# shellcheck shell=bash
# Scenario helpers for features that land on other branches (JWT, rate limits, BFF, TLS).
# Each check fails fast with a clear message when this Portico build lacks the feature, so a
# scenario never hangs or measures error responses. Source after lib/common.sh.
#
# Extension point: a new feature scenario writes its gateway.toml with `gateway_conf_head` +
# its own sections, calls `require_portico_feature`, starts Portico with `start_portico`, checks
# one request with `expect_200`, then calls `run_compare` with one --target per route.

source "$LT_DIR/lib/tls.sh"

# The HMAC secret for the `dev` provider, as gateway.toml's `secret_env` reads it.
export PORTICO_DEV_SECRET=${PORTICO_DEV_SECRET:-load-test-secret-0123456789abcdef0123456789abcdef}

# [server] + [log] for a one-worker gateway on 127.0.0.1:PORT. Usage: gateway_conf_head PORT
gateway_conf_head() {
    cat <<CONF
[server]
listen = "127.0.0.1:$1"
admin_listen = ""
workers = 1

[log]
access_log = ${ACCESS_LOG:-false}
CONF
}

# The `dev` JWT provider of the shipped gateway.toml (HS256, secret from the environment).
auth_dev_provider() {
    cat <<'CONF'

[auth.providers.dev]
issuer = "https://auth.portico.local"
audiences = ["portico"]
algorithms = ["HS256"]
secret_env = "PORTICO_DEV_SECRET"
leeway = "30s"
forward_claims = { sub = "x-user-id" }
CONF
}

# Mints a dev token with `portico token`. Usage: mint_token CONFIG SUB SCOPES. Sets TOKEN.
mint_token() {
    local config=$1 sub=$2 scopes=$3 out
    "$PORTICO" token --help >/dev/null 2>&1 \
        || die "this Portico build has no 'portico token' (built without JWT support)"
    if ! out=$("$PORTICO" token --config "$config" --provider dev --sub "$sub" --scope "$scopes" --ttl 1h 2>&1); then
        out=$("$PORTICO" token --provider dev --sub "$sub" --scope "$scopes" --ttl 1h 2>&1) \
            || die "portico token failed: $out"
    fi
    TOKEN=$(printf '%s\n' "$out" | grep -Eo '[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+' | tail -n1)
    [[ -n $TOKEN ]] || die "portico token printed no JWT: $out"
}

# The path a BFF profile is mounted at: its `mount`, else /NAME. Usage: bff_mount FILE NAME
bff_mount() {
    local mount
    mount=$(sed -n 's/^mount *= *"\(.*\)".*/\1/p' "$1" | head -n1)
    echo "${mount:-/$2}"
}

# The demo upstreams (users, orders, catalog: `portico demo --latency 0ms`) in their own process
# on the load generator's CPU. Sets USERS_PORT, ORDERS_PORT, CATALOG_PORT and DEMO_PID.
start_bff_demo() {
    USERS_PORT=$(free_port) ORDERS_PORT=$(free_port) CATALOG_PORT=$(free_port)
    local gw_port p
    gw_port=$(free_port)
    mkdir -p "$WORK/demo"
    cat >"$WORK/demo/demo.toml" <<CONF
[server]
listen = "127.0.0.1:$gw_port"
admin_listen = ""
workers = 1

[log]
access_log = false

[upstreams.users]
endpoints = ["127.0.0.1:$USERS_PORT"]

[upstreams.orders]
endpoints = ["127.0.0.1:$ORDERS_PORT"]

[upstreams.catalog]
endpoints = ["127.0.0.1:$CATALOG_PORT"]

[[routes]]
id = "users"
match = { path_prefix = "/users" }
upstream = "users"
CONF
    start_bg demo "$LOADGEN_CPU" "$PORTICO" demo --config "$WORK/demo/demo.toml" --latency 0ms
    DEMO_PID=$LAST_PID
    for p in "$USERS_PORT" "$ORDERS_PORT" "$CATALOG_PORT"; do
        wait_port demo "$DEMO_PID" "$p"
    done
}

# A gateway config on 127.0.0.1:PORT in front of the demo upstreams, with $BFF_DIR's profiles
# copied beside it and a plain route /api/users. JWT is optional: with `portico token` the
# profiles' `auth = { provider = "dev" }` works and AUTH_HEADER holds a token for sub 42;
# without it AUTH_HEADER is empty and parts fall back to `?user=` in the profiles.
# Usage: write_bff_config PORT CONFIG (after start_bff_demo). Sets AUTH_HEADER (an array).
write_bff_config() {
    local port=$1 config=$2 with_auth=0
    mkdir -p "$(dirname "$config")/bff"
    cp "$BFF_DIR"/*.toml "$(dirname "$config")/bff/"
    "$PORTICO" token --help >/dev/null 2>&1 && with_auth=1
    {
        gateway_conf_head "$port"
        cat <<CONF

[upstreams.users]
endpoints = ["127.0.0.1:$USERS_PORT"]
timeout = "2s"

[upstreams.orders]
endpoints = ["127.0.0.1:$ORDERS_PORT"]
timeout = "2s"

[upstreams.catalog]
endpoints = ["127.0.0.1:$CATALOG_PORT"]
timeout = "2s"
CONF
        ((with_auth)) && auth_dev_provider
        cat <<'CONF'

[bff]
dir = "bff"

[[routes]]
id = "users"
match = { path_prefix = "/api/users", methods = ["GET"] }
upstream = "users"
strip_prefix = "/api"
CONF
    } >"$config"
    require_portico_feature "[bff] with bff/*.toml" "$config"
    AUTH_HEADER=()
    if ((with_auth)); then
        mint_token "$config" 42 "users:read orders:read catalog:read"
        AUTH_HEADER=("authorization: Bearer $TOKEN")
    fi
}
