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
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sesam"]
CMD ["serve"]
