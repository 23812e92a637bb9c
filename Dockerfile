# tyk-idsync container image: a build stage with the Rust toolchain, and a
# small Debian runtime that runs as a non-root user.
#
#   docker build -t tyk-idsync .
#   docker run -p 8080:8080 -v $PWD/my.toml:/etc/tyk-idsync/tyk-idsync.toml tyk-idsync
#
# The image also carries `tyk-standin`, the Tyk Dashboard stand-in used by
# the demo stack (docker-compose.yml).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so that source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo fetch --locked
COPY . .
RUN cargo build --release --locked --bins \
    && mkdir /out && find target/release -maxdepth 1 -type f -executable -exec cp {} /out/ \;

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/tyk-idsync idsync \
    && mkdir -p /var/lib/tyk-idsync/data /etc/tyk-idsync \
    && chown -R idsync:idsync /var/lib/tyk-idsync
COPY --from=build /out/ /usr/local/bin/
COPY config/tyk-idsync.example.toml /etc/tyk-idsync/tyk-idsync.example.toml
USER idsync:idsync
WORKDIR /var/lib/tyk-idsync
# Listen on all interfaces inside the container; SQLite lands in ./data
# (mount a volume at /var/lib/tyk-idsync/data to keep it). Mount a config
# file and set TYK_IDSYNC_CONFIG=/etc/tyk-idsync/tyk-idsync.toml to use one;
# secrets come from files via the *_file keys.
ENV TYK_IDSYNC__SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["tyk-idsync", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["tyk-idsync"]
CMD ["serve"]
