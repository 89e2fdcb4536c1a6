#!/usr/bin/env bash
# Benchmark: API create+get throughput and latency of `airlock serve`.
#
# Each repetition starts a fresh `airlock serve` (new data dir) whose config
# has one request gate, so every new datasource waits at
# AwaitingRequestApproval and the operator collects nothing: the figures are
# the API's and the store's, not a job's. Setup is done as a user would, with
# the CLI: admin logs in, creates a workspace and a data-engineer who is a
# member of it; the load runs as that data-engineer (not admin, so the
# membership check is on the path).
#
# Per repetition, on the same server, in this order:
#   1. peer: GET /healthz x HEALTH_COUNT (no auth, no DB): the HTTP ceiling;
#   2. api_load: COUNT datasources, THREADS threads, POST then GET each.
# With MODES="alternate phases" (the default) steps 1-2 run twice on two fresh
# servers: "alternate" (each thread: POST, GET, POST, GET...) and "phases"
# (all POSTs, then all GETs, so each has a throughput of its own).
# Prints every run and the medians over REPS repetitions.
#
#   bench/api.sh                                  # 10,000 datasources, 4 threads, 3 reps
#   COUNT=2000 REPS=1 THREADS=2 MODES=alternate bench/api.sh
#   AIRLOCK_BIN=/path/to/airlock bench/api.sh
#
# Not a timed test: it prints figures (and exits non-zero if a request failed).
set -euo pipefail

COUNT=${COUNT:-10000}
THREADS=${THREADS:-8}
REPS=${REPS:-3}
HEALTH_COUNT=${HEALTH_COUNT:-20000}
MODES=${MODES:-alternate phases}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AIRLOCK_BIN=${AIRLOCK_BIN:-$ROOT/bin/airlock}
LOAD=${API_LOAD_BIN:-$ROOT/build/bench/api_load}
WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/airlock-bench-api.XXXXXX")}
mkdir -p "$WORK"

[ -x "$AIRLOCK_BIN" ] || { echo "api.sh: $AIRLOCK_BIN not found; run make or set AIRLOCK_BIN" >&2; exit 1; }
if [ -z "${API_LOAD_BIN:-}" ]; then
	make -s -C "$ROOT/bench" bench >&2
fi
[ -x "$LOAD" ] || { echo "api.sh: $LOAD not found; run make -C bench bench" >&2; exit 1; }

SERVE_PID=
cleanup() {
	if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
		kill "$SERVE_PID" 2>/dev/null || true
		wait "$SERVE_PID" 2>/dev/null || true
	fi
	[ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/airlock.yaml" <<'YAML'
# One request gate: datasources stop at AwaitingRequestApproval, nothing is collected.
gates:
  request: [{type: information-governance, role: approver}]
  review: [{type: data-approver, role: approver}]
YAML

# Starts serve on a fresh data dir; sets URL and SERVE_PID.
start_serve() {
	local dir=$1
	rm -rf "$dir"
	mkdir -p "$dir"
	"$AIRLOCK_BIN" serve --data-dir "$dir/var" --listen 127.0.0.1:0 --config "$WORK/airlock.yaml" \
		> "$dir/serve.out" 2> "$dir/serve.log" < /dev/null &
	SERVE_PID=$!
	URL=
	for _ in $(seq 1 300); do
		URL=$(sed -n 's|.*Airlock is running at \(http://[^/ ]*\).*|\1|p' "$dir/serve.out" | head -n1)
		[ -n "$URL" ] && break
		kill -0 "$SERVE_PID" 2>/dev/null || { echo "api.sh: serve exited: $(tail -5 "$dir/serve.log")" >&2; exit 1; }
		sleep 0.05
	done
	[ -n "$URL" ] || { echo "api.sh: serve did not print its address" >&2; exit 1; }
	for _ in $(seq 1 300); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ] && return 0
		sleep 0.05
	done
	echo "api.sh: serve never became ready" >&2
	exit 1
}

stop_serve() {
	kill "$SERVE_PID"
	wait "$SERVE_PID" 2>/dev/null || true
	SERVE_PID=
}

cli() { # cli USER ARGS... (stdin passes through)
	local user=$1
	shift
	AIRLOCK_CONFIG="$DIR/cli-$user.json" "$AIRLOCK_BIN" "$@"
}

setup_users() {
	cli admin login --server "$URL" --user admin --password-stdin < "$DIR/var/initial-admin-password" > /dev/null
	cli admin workspace create bench-ws --display-name "Benchmark workspace" > /dev/null
	echo "bencher-password-123" | cli admin user add bencher --role data-engineer --password-stdin > /dev/null
	cli admin workspace add-member bench-ws bencher > /dev/null
	echo "bencher-password-123" | cli bencher login --server "$URL" --user bencher --password-stdin > /dev/null
	TOKEN=$(sed -n 's/.*"token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$DIR/cli-bencher.json")
	[ -n "$TOKEN" ] || { echo "api.sh: no token in $DIR/cli-bencher.json" >&2; exit 1; }
}

cpu_secs() { # user+system CPU seconds of a process so far
	awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

field() { # field NAME < RESULT line
	tr ' ' '\n' | sed -n "s/^$1=//p"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "api.sh: $COUNT datasources, $THREADS threads, $REPS repetitions, modes: $MODES" >&2
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r)" >&2
failed=0
: > "$WORK/results"
for ((rep = 1; rep <= REPS; rep++)); do
	for mode in $MODES; do
		DIR="$WORK/run-$rep-$mode"
		start_serve "$DIR"
		setup_users
		flag=
		[ "$mode" = phases ] && flag=--phases
		h=$("$LOAD" --url "$URL" --mode healthz --count "$HEALTH_COUNT" --threads "$THREADS") || failed=1
		c0=$(cpu_secs "$SERVE_PID")
		d=$("$LOAD" --url "$URL" --token "$TOKEN" --workspace bench-ws --count "$COUNT" --threads "$THREADS" \
			--prefix "b$rep" $flag) || failed=1
		c1=$(cpu_secs "$SERVE_PID")
		rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVE_PID/status")
		dbsize=$(du -sk "$DIR/var" | cut -f1)
		stop_serve
		hr=$(grep '^RESULT' <<< "$h")
		dr=$(grep '^RESULT' <<< "$d")
		srv_cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')
		echo "$mode $hr $dr server_cpu_s=$srv_cpu server_rss_kb=$rss datadir_kb=$dbsize" >> "$WORK/results"
		echo "--- rep $rep, mode $mode" >&2
		grep -v '^RESULT' <<< "$h" >&2
		grep -v '^RESULT' <<< "$d" >&2
		echo "  serve CPU during the datasource load: ${srv_cpu} s; RSS after: ${rss} kB; data dir: ${dbsize} kB" >&2
	done
done

echo
echo "api.sh: medians over $REPS repetitions ($COUNT datasources, $THREADS threads)"
for mode in $MODES; do
	med() { grep "^$mode " "$WORK/results" | while read -r line; do field "$1" <<< "$line"; done | median; }
	hps=$(med healthz_per_s)
	cps=$(med create_per_s)
	gps=$(med get_per_s)
	printf '  %-9s creates %8.1f /s  p50 %6.3f ms  p99 %7.3f ms  max %8.3f ms\n' "$mode" "$cps" \
		"$(med create_p50_ms)" "$(med create_p99_ms)" "$(med create_max_ms)"
	printf '  %-9s gets    %8.1f /s  p50 %6.3f ms  p99 %7.3f ms  max %8.3f ms\n' "" "$gps" \
		"$(med get_p50_ms)" "$(med get_p99_ms)" "$(med get_max_ms)"
	printf '  %-9s peer GET /healthz %8.1f /s  p50 %6.3f ms  p99 %7.3f ms\n' "" "$hps" \
		"$(med healthz_p50_ms)" "$(med healthz_p99_ms)"
	awk -v c="$cps" -v g="$gps" -v h="$hps" -v cpu="$(med server_cpu_s)" -v n="$COUNT" -v m="$mode" 'BEGIN {
		printf "  %-9s ratio creates/healthz %.3f, gets/healthz %.3f; serve CPU %.2f s (%.0f us per create+get)\n",
			"", c / h, g / h, cpu, cpu * 1e6 / n }'
	echo "  $mode goal (>= 2000 creates/s, create p99 < 10 ms): $(awk -v c="$cps" -v p="$(med create_p99_ms)" \
		'BEGIN { print (c >= 2000 && p < 10) ? "met" : "NOT met" }')"
done
exit $failed
