# syntax=docker/dockerfile:1
# The image ships the binary 'make build' produces: static (CGO_ENABLED=0),
# -trimpath, version stamped. The final stage has no shell: ferry needs none.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces a module by a patched copy (third_party/README.md): its
# go.mod is all the download needs.
COPY third_party/jsonschema/go.mod ./third_party/jsonschema/
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=${VERSION}

# distroless/static: CA certificates, /etc/passwd with nonroot (65532) for
# SSH's home directory, tzdata; nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/ferry /ferry
USER 65532:65532
EXPOSE 8475
ENTRYPOINT ["/ferry"]
