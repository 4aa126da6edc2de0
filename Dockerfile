# syntax=docker/dockerfile:1
# discourse-oidc-bridge container image: multi-stage, locked release build, distroless non-root
# runtime. The build command below is the same one CI's release check runs.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Dependencies first, compiled against an empty crate, so source edits reuse this layer.
COPY Cargo.toml Cargo.lock ./
# Declared bench targets must exist for Cargo to read the manifest (they are not built here).
COPY benches ./benches
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --no-default-features --bin discourse-oidc-bridge \
 && rm -rf src
COPY src ./src
COPY templates ./templates
# The release build, without the `demo` feature: the image has no demo IdP, forum or pages.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --no-default-features --bin discourse-oidc-bridge \
 && install -D target/release/discourse-oidc-bridge /out/discourse-oidc-bridge \
 && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="discourse-oidc-bridge" \
      org.opencontainers.image.description="OpenID Connect login for Discourse through DiscourseConnect, with back-channel logout relay" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/discourse-oidc-bridge"
COPY --from=build /out/discourse-oidc-bridge /usr/local/bin/discourse-oidc-bridge
COPY --from=build --chown=65532:65532 /out/data /data
COPY config/bridge.example.toml /etc/discourse-oidc-bridge/bridge.example.toml
USER 65532:65532
# Relative paths in the configuration resolve against /, so the default [store] path ("data")
# is the /data volume. Only the config file's location is set through the environment; every
# key, including [server] listen (default 0.0.0.0:8080) and [store] path, keeps its documented
# default and can be changed in the mounted file.
WORKDIR /
ENV BRIDGE_CONFIG=/etc/discourse-oidc-bridge/bridge.toml
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/discourse-oidc-bridge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/discourse-oidc-bridge"]
CMD ["serve"]
