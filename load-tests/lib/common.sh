# shellcheck shell=bash
# Shared helpers for the load-test scripts: tools, build, loopback servers pinned to CPUs,
# oha runs, and cleanup of everything a script started (trap EXIT).
#
# Source it from a script in load-tests/; it sets `set -euo pipefail` and the trap.
# Environment knobs (all optional):
#   PROXY_CPU=0 LOADGEN_CPU=1   CPUs for the proxy under test and for oha + the backend
#   DURATION=5s CONNECTIONS=32  per oha run
#   SKIP_BUILD=1                use the release binaries already built (in LOAD_TARGET_DIR)
#   LOAD_TARGET_DIR             cargo target folder for them (default: $CARGO_TARGET_DIR/load-<checkout>)
#   PORTICO_BIN=/path           measure this portico binary (e.g. a build of another branch)
#   KEEP_WORK=1                 keep the temp folder (configs, server logs) for a post-mortem

set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(dirname "$LT_DIR")
SCRIPT_NAME=$(basename "$0")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
PROXY_CPU=${PROXY_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
RESULTS_DIR=$LT_DIR/results
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portico-load.XXXXXX")
STARTED_PIDS=()

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
    printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

# Stops every server this script started (each in its own process group, so nginx's and
# haproxy's workers go too), waits for them, and removes the temp folder.
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        # Bounded wait, then force.
        local i
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n ${KEEP_WORK:-} ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools -----------------------------------------------------------------------------------

ensure_cmd() { command -v "$1" >/dev/null 2>&1; }

# oha from crates.io when missing.
ensure_oha() {
    if ! ensure_cmd oha; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! ensure_cmd oha; then
        log "installing oha (cargo install oha --locked); this takes a few minutes once"
        cargo install oha --locked >&2 || die "cannot install oha"
    fi
    OHA=$(command -v oha)
}

# A Debian package when its command is missing: ensure_pkg COMMAND PACKAGE.
ensure_pkg() {
    local cmd=$1 pkg=$2
    ensure_cmd "$cmd" && return 0
    [[ -x /usr/sbin/$cmd ]] && return 0
    log "installing $pkg (apt-get)"
    if [[ $(id -u) -ne 0 ]]; then
        die "$cmd is missing and installing $pkg needs root: apt-get install $pkg"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >&2 \
        || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >&2; } \
        || die "cannot install $pkg"
}

ensure_cpus() {
    local n
    n=$(nproc)
    ensure_cmd taskset || ensure_pkg taskset util-linux
    if ((n < 2)); then
        log "warning: $n CPU: proxy and load generator share it; per-CPU-second figures still hold"
        PROXY_CPU=0
        LOADGEN_CPU=0
    fi
}

# Release build of the gateway and the fixed backend (skipped with SKIP_BUILD=1) in a target
# folder of this checkout's own (LOAD_TARGET_DIR): a target folder shared between checkouts can
# hold another branch's `portico` (cargo does not re-copy a binary it considers fresh), which
# would silently measure the wrong code. The binaries are then copied into $WORK so that no
# build can swap them under a run. PORTICO_BIN=/path measures that gateway binary instead.
LOAD_TARGET_DIR=${LOAD_TARGET_DIR:-$CARGO_TARGET_DIR/load-$(basename "$REPO_DIR")}
RELEASE_DIR=$LOAD_TARGET_DIR/release
build_release() {
    if [[ -z ${SKIP_BUILD:-} ]]; then
        log "building release binaries in $LOAD_TARGET_DIR (cargo build --release)"
        (cd "$REPO_DIR" && CARGO_TARGET_DIR=$LOAD_TARGET_DIR \
            cargo build --release --bin portico --bin portico-fixed-backend >&2) \
            || die "release build failed"
    fi
    mkdir -p "$WORK/bin"
    local portico_src=${PORTICO_BIN:-$RELEASE_DIR/portico}
    [[ -x $portico_src && -x $RELEASE_DIR/portico-fixed-backend ]] \
        || die "release binaries missing ($portico_src, $RELEASE_DIR/portico-fixed-backend); run without SKIP_BUILD"
    cp "$portico_src" "$WORK/bin/portico"
    cp "$RELEASE_DIR/portico-fixed-backend" "$WORK/bin/portico-fixed-backend"
    PORTICO=$WORK/bin/portico
    FIXED_BACKEND=$WORK/bin/portico-fixed-backend
}

# --- servers ---------------------------------------------------------------------------------

# A free loopback port (bound and released; the servers bind it right after).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a command in the background in its own process group, pinned to a CPU, with its output
# in $WORK/NAME.log. Sets LAST_PID. Usage: start_bg NAME CPU CMD [ARGS...]
start_bg() {
    local name=$1 cpu=$2
    shift 2
    setsid taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 </dev/null &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
}

# Waits (bounded) until something accepts TCP connections on 127.0.0.1:PORT.
# Usage: wait_port NAME PID PORT [SECONDS]
wait_port() {
    local name=$1 pid=$2 port=$3 secs=${4:-20}
    local deadline=$((SECONDS + secs))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$WORK/$name.log" >&2 || true
            die "$name exited during startup (log above)"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    tail -n 20 "$WORK/$name.log" >&2 || true
    die "$name did not listen on 127.0.0.1:$port within ${secs}s"
}

# Fills @KEY@ placeholders: render TEMPLATE OUT KEY=VALUE...
render() {
    local template=$1 out=$2
    shift 2
    local args=() kv
    for kv in "$@"; do
        args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${args[@]}" "$template" >"$out"
    local left
    left=$(grep -v '^[[:space:]]*#' "$out" | grep -o '@[A-Z_]*@' | head -n1 || true)
    [[ -z $left ]] || die "unfilled placeholder $left in $out"
}

# The fixed-response backend on the load generator's CPU. Sets BACKEND_ADDR and BACKEND_PID.
start_backend() {
    local port
    port=$(free_port)
    start_bg backend "$LOADGEN_CPU" "$FIXED_BACKEND" --listen "127.0.0.1:$port" --body-bytes "${BODY_BYTES:-64}"
    BACKEND_PID=$LAST_PID
    wait_port backend "$BACKEND_PID" "$port"
    BACKEND_ADDR=127.0.0.1:$port
}

# Portico from a config file, pinned to the proxy CPU. Usage: start_portico NAME CONFIG PORT
# Sets PORTICO_PID.
start_portico() {
    local name=$1 config=$2 port=$3
    start_bg "$name" "$PROXY_CPU" env RUST_LOG="${RUST_LOG:-info}" "$PORTICO" run --config "$config"
    PORTICO_PID=$LAST_PID
    wait_port "$name" "$PORTICO_PID" "$port"
}

# Portico as a plain proxy in front of $BACKEND_ADDR. Usage: start_portico_plain NAME true|false
# Sets PORTICO_PID and PORTICO_PORT.
start_portico_plain() {
    local name=$1 access_log=$2
    PORTICO_PORT=$(free_port)
    render "$LT_DIR/conf/portico.toml.in" "$WORK/$name.toml" \
        LISTEN="127.0.0.1:$PORTICO_PORT" BACKEND="$BACKEND_ADDR" ACCESS_LOG="$access_log"
    start_portico "$name" "$WORK/$name.toml" "$PORTICO_PORT"
}

# nginx, one worker, pinned to the proxy CPU. Usage: start_nginx NAME on|off [TLS_DIRECTIVES]
# Sets NGINX_PID and NGINX_PORT.
start_nginx() {
    local name=$1 logs=$2 tls=${3:-}
    ensure_pkg nginx nginx
    local nginx
    nginx=$(command -v nginx || echo /usr/sbin/nginx)
    NGINX_PORT=$(free_port)
    local access_log=off
    [[ $logs == on ]] && access_log="$WORK/$name-access.log"
    mkdir -p "$WORK/$name"
    render "$LT_DIR/conf/nginx.conf.in" "$WORK/$name/nginx.conf" \
        WORK="$WORK/$name" ACCESS_LOG="$access_log" BACKEND="$BACKEND_ADDR" \
        LISTEN="127.0.0.1:$NGINX_PORT${tls:+ ssl}" TLS_DIRECTIVES="$tls"
    # More than 4,096 client connections (load-tests/idle-conns): NGINX_WORKER_CONNECTIONS.
    sed -i "s/worker_connections 4096;/worker_connections ${NGINX_WORKER_CONNECTIONS:-4096};/" \
        "$WORK/$name/nginx.conf"
    "$nginx" -t -q -p "$WORK/$name" -c "$WORK/$name/nginx.conf" 2>"$WORK/$name-check.log" \
        || { cat "$WORK/$name-check.log" >&2; die "nginx rejected its config"; }
    start_bg "$name" "$PROXY_CPU" "$nginx" -p "$WORK/$name" -c "$WORK/$name/nginx.conf"
    NGINX_PID=$LAST_PID
    wait_port "$name" "$NGINX_PID" "$NGINX_PORT"
}

# haproxy, one thread, pinned to the proxy CPU. Usage: start_haproxy NAME on|off [TLS_BIND]
# Sets HAPROXY_PID and HAPROXY_PORT.
start_haproxy() {
    local name=$1 logs=$2 tls=${3:-}
    ensure_pkg haproxy haproxy
    local haproxy
    haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
    HAPROXY_PORT=$(free_port)
    local log_global="" log_defaults="" httplog="" scheme=http
    if [[ $logs == on ]]; then
        log_global="log stdout format raw local0"
        log_defaults="log global"
        httplog="option httplog"
    fi
    [[ -n $tls ]] && scheme=https
    render "$LT_DIR/conf/haproxy.cfg.in" "$WORK/$name.cfg" \
        PIDFILE="$WORK/$name.pid" LISTEN="127.0.0.1:$HAPROXY_PORT" BACKEND="$BACKEND_ADDR" \
        LOG_GLOBAL="$log_global" LOG_DEFAULTS="$log_defaults" HTTPLOG="$httplog" \
        TLS_BIND="$tls" SCHEME="$scheme"
    "$haproxy" -c -q -f "$WORK/$name.cfg" >"$WORK/$name-check.log" 2>&1 \
        || { cat "$WORK/$name-check.log" >&2; die "haproxy rejected its config"; }
    start_bg "$name" "$PROXY_CPU" "$haproxy" -db -f "$WORK/$name.cfg"
    HAPROXY_PID=$LAST_PID
    wait_port "$name" "$HAPROXY_PID" "$HAPROXY_PORT"
}

# --- load ------------------------------------------------------------------------------------

# Checks that URL answers 200 once (curl-free: bash /dev/tcp), so a scenario fails fast with a
# clear message instead of measuring errors. Usage: expect_200 NAME URL_PATH PORT [HEADER...]
expect_200() {
    local name=$1 path=$2 port=$3
    shift 3
    local status
    status=$(python3 "$LT_DIR/lib/probe.py" "127.0.0.1:$port" "$path" "$@") \
        || die "$name: no answer on 127.0.0.1:$port$path"
    [[ $status == 200 ]] || die "$name: GET $path answered $status, expected 200 (see $WORK/*.log)"
}

# Sends N keep-alive requests to URL with oha (bounded to 300 s) on PROFILE_CONNECTIONS
# connections (default 16), the report in $WORK/oha-NAME.json; dies unless 99% got a 2xx.
# Usage: bounded_oha NAME N URL [HEADER]
bounded_oha() {
    local name=$1 n=$2 url=$3 args=()
    [[ -n ${4:-} ]] && args=(-H "$4")
    timeout 300 "$OHA" --no-tui --output-format json -c "${PROFILE_CONNECTIONS:-16}" -n "$n" \
        "${args[@]}" "$url" >"$WORK/oha-$name.json" || die "oha failed ($name)"
    local ok
    ok=$(count_2xx "$WORK/oha-$name.json")
    ((ok * 100 >= n * 99)) || die "$name: only $ok of $n requests got a 2xx"
}

# The 2xx responses in an oha JSON report. Usage: count_2xx FILE
count_2xx() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(v for k,v in d["statusCodeDistribution"].items() if k.startswith("2")))' "$1"
}

# Instructions in a callgrind file (all threads). Usage: callgrind_total FILE
callgrind_total() {
    callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}'
}

# Stops a server running under valgrind (SIGTERM, a graceful exit writes its profile) and
# waits up to 60 s for it. Usage: stop_valgrind NAME PID
stop_valgrind() {
    local name=$1 pid=$2 _
    kill -TERM "$pid"
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    die "$name did not exit under valgrind within 60s"
}

# One oha run pinned to the load generator's CPU, JSON written to OUT.
# Usage: oha_run OUT URL [OHA ARGS...]
oha_run() {
    local out=$1 url=$2
    shift 2
    local secs=${DURATION%s}
    timeout $((secs + 60)) taskset -c "$LOADGEN_CPU" "$OHA" --no-tui --output-format json \
        -z "$DURATION" -c "$CONNECTIONS" "$@" "$url" >"$out" \
        || die "oha failed against $url"
}

# Runs lib/compare.py with this script's settings. Usage: run_compare NAME TITLE [ARGS...]
# (ARGS: --target NAME URL PID ..., --baseline, --half-target, --target-header, ...)
run_compare() {
    local name=$1 title=$2
    shift 2
    log "running ${ROUNDS:-5} interleaved rounds of $DURATION per target ($name)"
    python3 "$LT_DIR/lib/compare.py" --oha "$OHA" --out-dir "$RESULTS_DIR" --name "$name" \
        --title "$title" --rounds "${ROUNDS:-5}" --half-rounds "${HALF_ROUNDS:-3}" \
        --duration "$DURATION" --connections "$CONNECTIONS" --proxy-cpu "$PROXY_CPU" \
        --loadgen-cpu "$LOADGEN_CPU" "$@"
}
