# waitroom in a container: built from this repository, run as a non-root user on a
# distroless base (no shell, no package manager).
#   docker build -t waitroom .
#   docker run --rm -p 8080:8080 -p 9090:9090 -e WAITROOM_ADMIN_TOKEN=change-me-now \
#     -v $PWD/my-waitroom.toml:/etc/waitroom/waitroom.toml:ro waitroom
FROM docker.io/library/rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p waitroom \
 && strip target/release/waitroom

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/waitroom /usr/local/bin/waitroom
COPY config/container.toml /etc/waitroom/waitroom.toml
# Memory mode keeps its line here (mount a volume to keep it across containers).
WORKDIR /home/nonroot
USER nonroot:nonroot
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/waitroom"]
CMD ["--config", "/etc/waitroom/waitroom.toml", "--log-format", "json"]
