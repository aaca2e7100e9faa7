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
