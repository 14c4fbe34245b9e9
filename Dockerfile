# syntax=docker/dockerfile:1
# Floodgate as a static binary on a distroless base (no shell, no package manager, runs as nonroot).
#   docker build -t floodgate .
#   docker run --rm -p 8081:8081 floodgate                       # in-memory store, bundled example limits
# The builder's Go minor version follows go.mod (envoy/compose_test.go checks it).

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that editing the source does not re-download them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# CGO off: a static binary for the static distroless image. -trimpath and -s -w: reproducible, smaller.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/floodgate ./cmd/floodgate

# static-debian12 carries CA certificates (rediss://) and tzdata; :nonroot runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/floodgate /floodgate
USER nonroot:nonroot
# 8081: gRPC for Envoy (ext_authz Check, RLS ShouldRateLimit, grpc.health.v1, reflection).
# 8000: HTTP (/healthz, /readyz, /metrics). The binary listens on 127.0.0.1:8000 unless told otherwise:
# pass --http-addr 0.0.0.0:8000 to reach it from outside the container (docker-compose.yaml does).
EXPOSE 8081 8000
ENTRYPOINT ["/floodgate"]
