# Multi-stage build: compile with the Rust toolchain, ship a slim non-root image.
#
#   docker build -t portico --build-arg PORTICO_GIT_COMMIT=$(git rev-parse --short HEAD) .
#   docker run --rm -p 8080:8080 portico                       # the demo: answers at once
#   docker run --rm -p 8080:8080 -v "$PWD/conf:/etc/portico:ro" portico \
#       run --config /etc/portico/gateway.toml                  # your config (with bff/ beside it)
#   docker run --rm -p 8080:8080 -p 9901:9901 -e PORTICO_ADMIN_LISTEN=0.0.0.0:9901 portico
#                                                                # admin API reachable from outside
FROM rust:1-slim-bookworm AS build
# g++: mlua builds the Luau VM (scripts) from its C++ source.
RUN apt-get update && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# No .git in the build context: the commit `portico --version` prints comes in as an argument.
ARG PORTICO_GIT_COMMIT=unknown
ENV PORTICO_GIT_COMMIT=${PORTICO_GIT_COMMIT}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin portico \
    && strip target/release/portico

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin portico
COPY --from=build /src/target/release/portico /usr/local/bin/portico
COPY gateway.toml /etc/portico/gateway.toml
COPY bff /etc/portico/bff
COPY scripts /etc/portico/scripts
# Inside a container the public listener binds all interfaces, and the probe listener
# (/healthz and /readyz only) is on so the orchestrator and HEALTHCHECK can reach it. The admin
# API stays on loopback unless PORTICO_ADMIN_LISTEN (or --admin-listen) says otherwise; give it
# a token (server.admin_token_env) when you open it.
ENV PORTICO_LISTEN=0.0.0.0:8080 \
    PORTICO_HEALTH_LISTEN=0.0.0.0:9902
USER 10001
EXPOSE 8080 8443 9902
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["portico", "probe", "--timeout", "2s", "http://127.0.0.1:9902/readyz"]
ENTRYPOINT ["portico"]
CMD ["demo", "--config", "/etc/portico/gateway.toml"]
