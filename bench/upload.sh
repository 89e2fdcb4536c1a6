#!/usr/bin/env bash
# Benchmark: a large file uploaded over loopback with the tus protocol to our
# uploader (`airlock uploader`: SHA-256 of the whole file computed while it
# streams in, every acknowledged byte fsynced) and, in the same run, to two
# peers that do neither: tusd (the reference server, Go, built here from the
# Go module proxy) and @tus/server with its FileStore (Node.js, from npm).
# All three store to the same disk (BENCH_DIR) and get the same client
# (bench/upload_bench.py). Prints throughput (MB/s) and peak RSS per run, the
# medians over REPS repetitions and the ratios; the last line is JSON.
#
#   make && bench/upload.sh                     # 2 GiB, one PATCH, 3 reps
#   SIZE=$((256<<20)) REPS=1 bench/upload.sh    # a quick look
#   CHUNK=$((64<<20)) bench/upload.sh           # 64 MiB PATCH requests
#   SERVERS="airlock tusd" bench/upload.sh
#
# Peers are cached outside the repository, keyed by version:
#   tusd          $AIRLOCK_CACHE/bench/bin/tusd-$TUSD_VERSION
#   @tus/server   $AIRLOCK_CACHE/bench/node-tus-server-$TUS_NODE_VERSION
# Not a timed test.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${AIRLOCK_CACHE:-$HOME/.cache/airlock}
TUSD_VERSION=${TUSD_VERSION:-v2.9.1}
TUS_NODE_VERSION=${TUS_NODE_VERSION:-2.4.5}
TUS_FILE_STORE_VERSION=${TUS_FILE_STORE_VERSION:-2.1.1}
export AIRLOCK_BIN=${AIRLOCK_BIN:-$ROOT/bin/airlock}
export BENCH_WORK=${BENCH_DIR:-$CACHE/bench/upload-work}
PY=${PYTHON:-$CACHE/venv-current/bin/python}
[ -x "$PY" ] || PY=python3

[ -x "$AIRLOCK_BIN" ] || { echo "upload.sh: $AIRLOCK_BIN not found; run make or set AIRLOCK_BIN" >&2; exit 1; }
mkdir -p "$CACHE/bench/bin" "$BENCH_WORK"

export TUSD_BIN=$CACHE/bench/bin/tusd-$TUSD_VERSION
if [ ! -x "$TUSD_BIN" ]; then
	echo "building tusd $TUSD_VERSION (go install) ..." >&2
	tmp=$(mktemp -d)
	GOBIN=$tmp GOFLAGS=-mod=mod go install "github.com/tus/tusd/v2/cmd/tusd@$TUSD_VERSION"
	mv "$tmp/tusd" "$TUSD_BIN"
	rm -rf "$tmp"
fi

export TUS_NODE_DIR=$CACHE/bench/node-tus-server-$TUS_NODE_VERSION
if [ ! -d "$TUS_NODE_DIR/node_modules/@tus/server" ]; then
	echo "installing @tus/server $TUS_NODE_VERSION (npm) ..." >&2
	mkdir -p "$TUS_NODE_DIR"
	(cd "$TUS_NODE_DIR" && [ -f package.json ] || echo '{"private": true}' > package.json)
	npm install --prefix "$TUS_NODE_DIR" --no-audit --no-fund \
		"@tus/server@$TUS_NODE_VERSION" "@tus/file-store@$TUS_FILE_STORE_VERSION" >&2
fi
# node resolves the script's imports from its own directory: put it beside
# the modules.
cp "$ROOT/bench/tus_node_server.mjs" "$TUS_NODE_DIR/"

echo "airlock $("$AIRLOCK_BIN" --version | awk '{print $2}'), tusd $TUSD_VERSION, @tus/server $TUS_NODE_VERSION," \
	"node $(node --version); $(nproc) CPUs; disk of $BENCH_WORK: $(df -h --output=source "$BENCH_WORK" | tail -1)" >&2
exec "$PY" "$ROOT/bench/upload_bench.py"
