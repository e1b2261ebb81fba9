# CPU image of sentiment-server.
#
#   docker build -t sentiment-server .                  # official rust / debian images
#   scripts/build-image.sh                              # no registry: local base images,
#                                                       # vendored crates, version tags
#
# Run (the model is mounted, never baked in; the root filesystem can be read-only):
#
#   docker run --read-only --cap-drop ALL --security-opt no-new-privileges \
#       -p 8000:8000 -v /path/to/model:/models/model:ro sentiment-server
#
# Mount points and settings:
#   /models/model   the model directory (config.json, tokenizer.json, model.safetensors),
#                   mounted read-only; MODEL_DIR points elsewhere for other layouts.
#   Every flag is an environment variable (see `sentiment-server --help`). Change the port with
#   PORT, not --port: the HEALTHCHECK probes the port in PORT.
#   Runs as UID:GID 10001:10001; writes nothing to disk, so no writable mount is needed.
#
# Builds with the classic builder and with BuildKit (no BuildKit-only syntax: the engine this
# was made on has no buildx). Dependencies compile in their own layer, keyed on Cargo.toml and
# Cargo.lock only, so a source change rebuilds just this crate.
#
# Offline builds: when target/docker-deps/ exists in the context (scripts/build-image.sh makes
# it with `cargo vendor`), it holds vendor/ and .cargo/config.toml, which replaces crates.io
# with the vendored sources, and nothing is fetched. Without it, cargo fetches from crates.io.

ARG BUILDER_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# Dependency layer. The glob docker-dep[s] makes target/docker-deps optional: its contents
# (vendor/, .cargo/config.toml) land in /src when it exists; without it only the manifests do.
COPY Cargo.toml Cargo.lock build.rs target/docker-dep[s] ./
# The gRPC protocol definition build.rs compiles (with protox: no protoc in the image).
COPY proto ./proto
# Stand-in targets so the manifest parses and every dependency compiles here: every [[bench]] and
# [[test]] of Cargo.toml must exist, though none is built; their names are read from Cargo.toml so a
# new one cannot break this layer.
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && echo '' > src/lib.rs \
    && awk '/^\[\[(bench|test)\]\]/{dir=($0 ~ /bench/)?"benches":"tests"; next} \
            dir!="" && /^name *=/{n=$0; gsub(/^name *= *"|" *$/,"",n); print dir "/" n ".rs"; dir=""}' \
        Cargo.toml | while read -r stub; do mkdir -p "${stub%/*}" && echo 'fn main() {}' > "$stub"; done \
    && cargo build --release --locked --bin sentiment-server \
    && rm -rf src target/release/sentiment-server* target/release/.fingerprint/sentiment-server-* \
        target/release/deps/sentiment_server-* target/release/deps/libsentiment_server-*

COPY src ./src
# COPY keeps the sources' modification times, which may be older than the stand-ins': touch so
# that cargo never reuses a stand-in build.
RUN find src -type f -exec touch {} + \
    && cargo build --release --locked --bin sentiment-server \
    && mkdir -p /out \
    && objcopy --only-keep-debug target/release/sentiment-server /out/sentiment-server.debug \
    && strip --strip-debug -o /out/sentiment-server target/release/sentiment-server \
    && /out/sentiment-server --version

FROM ${RUNTIME_IMAGE} AS runtime
# The binary needs only glibc and libgcc_s, which every Debian image has. Its one outbound TLS
# client (`download`) carries Mozilla's root certificates inside the binary, so no
# ca-certificates either (a private mirror's CA can be mounted under /etc/ssl/certs, which is
# read too). No shell tools are added (no curl, wget, python):
# the HEALTHCHECK is the binary itself.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --no-log-init app \
    && mkdir -p /models/model
COPY --from=builder /out/sentiment-server /usr/local/bin/sentiment-server

ENV MODEL_DIR=/models/model \
    HOST=0.0.0.0 \
    PORT=8000 \
    GRPC_PORT=8001 \
    LOG_FORMAT=json
USER 10001:10001
# 8000: HTTP (REST, probes, metrics); 8001: gRPC (Open Inference Protocol, grpc.health.v1).
EXPOSE 8000 8001
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["sentiment-server", "healthcheck"]
ENTRYPOINT ["sentiment-server"]

# Last, so that a new commit changes only metadata, never a layer.
ARG VERSION=0.0.0-dev
ARG GIT_SHA=unknown
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="sentiment-server" \
      org.opencontainers.image.description="Inference server for Hugging Face text classifiers on candle (CPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
