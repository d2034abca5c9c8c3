# syntax=docker/dockerfile:1
# The polaroid image: one binary (coordinator, worker, standalone, job, token), run as a
# non-root user on a distroless base that holds the C runtime it links to (glibc,
# libgcc) and CA certificates (object stores, REST sources, https coordinators), and
# nothing else: no shell, no package manager.
#
#   docker build -t polaroid:0.1.0 .
#   docker run --rm polaroid:0.1.0 --help
#
# Dependencies are compiled in a layer of their own (cargo-chef): it is rebuilt only when
# Cargo.toml or Cargo.lock change, not when the sources do. docs/kubernetes.md says how
# the image is published.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The recipe: the workspace's manifests and lockfile, without the sources.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json -p polaroid
COPY . .
RUN cargo build --release --locked -p polaroid --bin polaroid \
 && install -D -m 0755 target/release/polaroid /out/polaroid

# Debian 12, as the build stage, so the glibc the binary was linked against is there.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/polaroid /usr/local/bin/polaroid
# distroless' nonroot user; the chart runs with the same ids.
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/polaroid"]
CMD ["--help"]
