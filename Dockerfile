# edgewake in a container, with the process driver (the sandbox driver needs runc and
# root on the host: run edgewake there, not in a container).
#   docker build -t edgewake .
#   docker run -p 80:80 -p 443:443 -p 127.0.0.1:4280:4280 -v edgewake:/var/lib/edgewake edgewake
# The API token is generated into the volume on first start (see `docker logs`), or set
# with -e EDGEWAKE_API_TOKEN=...

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin edgewake --bin edgewake-functions

FROM debian:bookworm-slim
# tini reaps what machines leave behind (edgewake is not PID 1); ca-certificates for
# registries. Versions come with the pinned Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/edgewake /src/target/release/edgewake-functions /usr/local/bin/
COPY packaging/edgewake.toml /etc/edgewake/edgewake.toml
RUN mkdir -p /etc/edgewake/certs /var/lib/edgewake
ENV EDGEWAKE_CONFIG=/etc/edgewake/edgewake.toml
VOLUME ["/var/lib/edgewake"]
EXPOSE 80 443 4280
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/edgewake"]
CMD ["serve", "--api", "0.0.0.0:4280"]
