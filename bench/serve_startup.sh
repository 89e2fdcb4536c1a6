#!/usr/bin/env bash
# Benchmark: start-to-ready time and idle RSS of `airlock serve`, against the
# peer `python3 -m http.server` (same machine, same run).
#
#  - first start: a new data dir, so serve creates the database and the
#    admin account (argon2id, deliberately slow); timed once.
#  - later starts: the same data dir again, REPS times.
# Ready = the first 200 from GET /readyz (airlock) or GET / (peer), polled
# every millisecond by build/bench/startup_probe, timed from the spawn.
# RSS = VmRSS from /proc/PID/status after IDLE seconds without requests; also
# printed: PSS (shared library pages divided among the processes mapping
# them) and anonymous RSS (the process's own heap and stacks), from
# /proc/PID/smaps_rollup.
# Prints every run and the medians.
#
#   bench/serve_startup.sh                 # 10 repetitions, 5 s idle
#   REPS=3 IDLE=1 bench/serve_startup.sh
set -euo pipefail

REPS=${REPS:-10}
IDLE=${IDLE:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AIRLOCK_BIN=${AIRLOCK_BIN:-$ROOT/bin/airlock}
PROBE=$ROOT/build/bench/startup_probe
WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/airlock-bench-startup.XXXXXX")}
mkdir -p "$WORK"

[ -x "$AIRLOCK_BIN" ] || { echo "serve_startup.sh: $AIRLOCK_BIN not found; run make or set AIRLOCK_BIN" >&2; exit 1; }
make -s -C "$ROOT/bench" bench >&2
command -v python3 > /dev/null || { echo "serve_startup.sh: the peer needs python3" >&2; exit 1; }

PID=
cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill "$PID" 2>/dev/null || true
	fi
	[ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_once PORT URL_PATH -- CMD...: starts, waits for ready, idles, prints
# "ms rss_kb pss_kb anon_kb", stops.
run_once() {
	local port=$1 path=$2 out ms rss pss anon
	shift 3
	out=$("$PROBE" --log "$WORK/server.log" "http://127.0.0.1:$port$path" -- "$@")
	ms=$(sed -n 's/.*ready_ms=\([0-9.]*\).*/\1/p' <<< "$out")
	PID=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<< "$out")
	sleep "$IDLE"
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
	pss=$(awk '/^Pss:/ {print $2}' "/proc/$PID/smaps_rollup")
	anon=$(awk '/^RssAnon/ {print $2}' "/proc/$PID/status")
	kill "$PID"
	while kill -0 "$PID" 2>/dev/null; do sleep 0.01; done
	PID=
	echo "$ms $rss $pss $anon"
}
show() { # show "ms rss pss anon"
	set -- $1
	echo "ready $1 ms, RSS $2 kB (PSS $3 kB, anonymous $4 kB)"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "serve_startup.sh: $REPS starts each, RSS after ${IDLE} s idle" >&2
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), kernel $(uname -r)" >&2

port=$(free_port)
serve=("$AIRLOCK_BIN" serve --data-dir "$WORK/var" --listen "127.0.0.1:$port")
first=$(run_once "$port" /readyz -- "${serve[@]}")
echo "airlock first start (new data dir, creates admin): $(show "$first")" >&2

: > "$WORK/airlock" 
: > "$WORK/peer"
mkdir -p "$WORK/www"
for ((i = 1; i <= REPS; i++)); do
	port=$(free_port)
	serve=("$AIRLOCK_BIN" serve --data-dir "$WORK/var" --listen "127.0.0.1:$port")
	a=$(run_once "$port" /readyz -- "${serve[@]}")
	port=$(free_port)
	p=$(run_once "$port" / -- python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$port")
	echo "rep $i: airlock $(show "$a"); python3 -m http.server $(show "$p")" >&2
	echo "$a" >> "$WORK/airlock"
	echo "$p" >> "$WORK/peer"
done

am=$(cut -d' ' -f1 "$WORK/airlock" | median)
ar=$(cut -d' ' -f2 "$WORK/airlock" | median)
ap=$(cut -d' ' -f3 "$WORK/airlock" | median)
aa=$(cut -d' ' -f4 "$WORK/airlock" | median)
pm=$(cut -d' ' -f1 "$WORK/peer" | median)
pr=$(cut -d' ' -f2 "$WORK/peer" | median)
pp=$(cut -d' ' -f3 "$WORK/peer" | median)
pa=$(cut -d' ' -f4 "$WORK/peer" | median)
set -- $first
echo
echo "serve_startup.sh: medians of $REPS (memory after ${IDLE} s idle)"
printf '  airlock serve, first start    : ready %8.1f ms   RSS %7.0f kB  PSS %7.0f kB  anon %7.0f kB\n' "$1" "$2" "$3" "$4"
printf '  airlock serve, existing data  : ready %8.1f ms   RSS %7.0f kB  PSS %7.0f kB  anon %7.0f kB\n' "$am" "$ar" "$ap" "$aa"
printf '  python3 -m http.server (peer) : ready %8.1f ms   RSS %7.0f kB  PSS %7.0f kB  anon %7.0f kB\n' "$pm" "$pr" "$pp" "$pa"
awk -v am="$am" -v ar="$ar" -v pm="$pm" -v pr="$pr" -v ap="$ap" -v pp="$pp" 'BEGIN {
	printf "  ratio airlock/peer: ready time %.2fx, RSS %.2fx, PSS %.2fx\n", am / pm, ar / pr, ap / pp;
	printf "  goal ready < 100 ms: %s; goal idle RSS < 10 MB (10240 kB): %s\n",
		(am < 100) ? "met" : "NOT met", (ar < 10240) ? "met" : "NOT met" }'
