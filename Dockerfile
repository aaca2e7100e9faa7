# Multi-stage build: compile with the Rust toolchain, ship a slim non-root image.
FROM rust:1-slim-bookworm AS build
# g++: mlua builds the Luau VM (scripts) from its C++ source.
RUN apt-get update && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin portico

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin portico
COPY --from=build /src/target/release/portico /usr/local/bin/portico
COPY gateway.toml /etc/portico/gateway.toml
COPY bff /etc/portico/bff
COPY scripts /etc/portico/scripts
# Inside a container the public listener must bind all interfaces; admin stays on loopback.
RUN sed -i 's/^listen = "127.0.0.1:8080"/listen = "0.0.0.0:8080"/' /etc/portico/gateway.toml
USER portico
EXPOSE 8080 8443
ENTRYPOINT ["portico"]
CMD ["run", "--config", "/etc/portico/gateway.toml"]
