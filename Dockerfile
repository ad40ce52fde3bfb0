# syntax=docker/dockerfile:1.7
# The seclake binaries (seclake, and every other binary of the workspace
# as it gains them: report, commerce-api) in a small non-root image.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t seclake:0.1.0 .
#
# Each platform is compiled natively (QEMU or a native builder under buildx):
# librdkafka's cmake build does not cross-compile cleanly. amd64 images target
# x86-64-v3 (AVX2) like every x86-64 build of this repo (.cargo/config.toml);
# for older CPUs pass
#   --build-arg TARGET_CPU=x86-64 --build-arg FEATURES=runtime-detection

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG TARGET_CPU=""
ARG FEATURES=""
ENV CARGO_TARGET_DIR=/cache/target
# Registry and target live in cache mounts, so a rebuild compiles only what
# changed; the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/cache/target \
    if [ -n "$TARGET_CPU" ]; then export RUSTFLAGS="-C target-cpu=$TARGET_CPU"; fi \
 && cargo build --profile dist --locked --workspace --exclude seclake-benches --bins \
        ${FEATURES:+--features "$FEATURES"} \
 && mkdir -p /out \
 && find /cache/target/dist -maxdepth 1 -type f -executable -exec cp {} /out/ \;

FROM debian:bookworm-slim AS runtime
# libssl3 (Kafka TLS and SASL) and zlib are linked dynamically; the CA
# bundle serves S3, OpenSearch and Kafka over TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/seclake --create-home seclake \
 && install -d -o seclake -g seclake /var/lib/seclake/orders
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/seclake
# The metrics endpoint, when `[metrics] address` is set; commerce-api's HTTP.
EXPOSE 9898 8080
ENTRYPOINT ["seclake"]
CMD ["run", "--config", "/etc/seclake/seclake.toml"]
