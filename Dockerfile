# The operator image: a static binary on a distroless base, running as non-root.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin lgtm-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/lgtm-operator /usr/local/bin/lgtm-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/lgtm-operator"]
CMD ["run"]
