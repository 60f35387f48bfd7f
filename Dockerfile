# syntax=docker/dockerfile:1
#
# latchkey in a small runtime image: non-root, data dir as a volume, a
# HEALTHCHECK that needs no shell or curl (`latchkey healthcheck`).
#
#   docker build -t latchkey .                       # the server
#   docker build -t latchkey-tasks --target tasks-api .   # the example relying service
#
# Secrets come as files (LATCHKEY_MASTER_KEY_FILE, LATCHKEY_DATABASE_URL_FILE,
# LATCHKEY_ADMIN_PASSWORD_FILE, LATCHKEY_METRICS_TOKEN_FILE); see compose.yaml.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin latchkey --example tasks_api \
    && mkdir -p /out \
    && cp target/release/latchkey target/release/examples/tasks_api /out/

FROM debian:bookworm-slim AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home latchkey \
    && mkdir -p /data \
    && chown latchkey:latchkey /data \
    && chmod 0700 /data
USER 10001:10001

FROM base AS tasks-api
COPY --from=build /out/tasks_api /usr/local/bin/tasks_api
ENV TASKS_LISTEN=0.0.0.0:8081
EXPOSE 8081
ENTRYPOINT ["tasks_api"]

FROM base AS latchkey
COPY --from=build /out/latchkey /usr/local/bin/latchkey
ENV LATCHKEY_DATA_DIR=/data \
    LATCHKEY_LISTEN=0.0.0.0:8080 \
    LATCHKEY_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=6s --start-period=20s --retries=3 CMD ["latchkey", "healthcheck"]
ENTRYPOINT ["latchkey"]
CMD ["serve"]
