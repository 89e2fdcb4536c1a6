# The airlock image: one executable, /usr/local/bin/airlock, whose subcommands
# are the operator (`airlock operator`), the native job runner, the uploader
# and the embedded server. The Helm chart (deploy/helm/airlock) runs it.
#
#   docker build -t airlock:0.1.0 .
#   docker run --rm airlock:0.1.0 --help
#
# Two stages: Debian 12 with the compiler and the -dev packages builds
# bin/airlock with the repository's Makefile; Debian 12 slim carries only the
# runtime libraries and the binary, and runs it as the non-root user
# 65532:65532 (the uid/gid the chart's securityContext names).
#
# Not built on the development machine (it has no container engine): the
# package names below were checked against Debian 12 with `apt-cache show`,
# and the build stage runs exactly `make`, as the README does.

ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_SLIM_IMAGE=debian:12-slim

# ---- build --------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build
# The build dependencies of scripts/bootstrap.sh (build mode), minus the sqlite3
# shell and ca-certificates, which only running the airlock needs.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc make pkg-config nodejs npm \
      libmicrohttpd-dev libjansson-dev libyaml-dev libsqlite3-dev \
      libsodium-dev libssl-dev libcurl4-openssl-dev zlib1g-dev libpq-dev libmariadb-dev libcjose-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what `make` reads (see .dockerignore): the sources, the CRDs it embeds
# and the script that embeds them, and the script that installs the upload
# widget's tus-js-client from npm (pinned and checked) for the build to embed.
COPY Makefile ./
COPY src/ src/
COPY scripts/embed-crds.sh scripts/web-deps.sh scripts/
COPY deploy/crds/ deploy/crds/
# One job per core is plenty for a single binary; warnings are errors (Makefile).
RUN make -j"$(nproc)" \
 && ./bin/airlock --help >/dev/null \
 && strip --strip-unneeded -o /airlock bin/airlock

# ---- runtime ------------------------------------------------------------------
FROM ${DEBIAN_SLIM_IMAGE}
# Runtime libraries only: libmicrohttpd (HTTP server), jansson (JSON), libyaml,
# SQLite, libsodium, OpenSSL (libcrypto), zlib (gzip output), libcurl, libpq
# and libmariadb (loaded with dlopen as libcurl.so.4, libpq.so.5 and
# libmariadb.so.3 by the processes that need them: the operator, the job
# runner), and the CA bundle that libcurl verifies the API server and source
# systems with.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libmicrohttpd12 libjansson4 libyaml-0-2 libsqlite3-0 libsodium23 libssl3 zlib1g libcurl4 \
      libpq5 libmariadb3 libcjose0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 airlock \
 && useradd --system --uid 65532 --gid 65532 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin airlock \
 && mkdir -p /data \
 && chown 65532:65532 /data \
 && chmod 0700 /data
COPY --from=build /airlock /usr/local/bin/airlock
# /data: the embedded server's data directory (`airlock serve --data-dir /data`);
# the operator writes nothing there.
WORKDIR /data
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["airlock"]
CMD ["--help"]

LABEL org.opencontainers.image.title="airlock" \
      org.opencontainers.image.description="Secure ingress and egress for a research Secure Data Environment" \
      org.opencontainers.image.version="0.1.0"
