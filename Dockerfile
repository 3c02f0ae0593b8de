# Builds the careledger binary and runs it on a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p careledger-gateway

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/careledger /usr/local/bin/careledger
ENV CARELEDGER_ADDR=0.0.0.0:8080 CARELEDGER_DATA_DIR=/data
EXPOSE 8080
CMD ["careledger", "serve"]
