# Two stages: build with the full toolchain, run on a slim Debian with only the shared
# libraries the binary links.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      pkg-config libclang-dev libxmlsec1-dev libxml2-dev libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin sesam

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates libxmlsec1 libxmlsec1-openssl libxml2 libssl3 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sesam /usr/local/bin/sesam
WORKDIR /var/lib/sesam
# Large allocations (argon2id's 19 MiB per password hash) are mapped and unmapped rather
# than kept in glibc's heap: idle memory stays near 20 MB instead of growing by 19 MiB per
# concurrent hash that ever ran (docs/PERFORMANCE.md). Set the same under systemd.
ENV MALLOC_MMAP_THRESHOLD_=131072
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sesam"]
CMD ["serve"]
