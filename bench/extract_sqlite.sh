#!/usr/bin/env bash
# Benchmark: `airlock run-job` (native runner, SQLite -> CSV) against the named
# peer `sqlite3 -csv -header db "select * from t" > out.csv`, same table, same
# run, alternating, median of REPS. Not a timed test: it prints figures.
#
#   bench/extract_sqlite.sh                  # 2,000,000 rows, 5 repetitions
#   ROWS=500000 REPS=3 AIRLOCK_BIN=/path/to/airlock bench/extract_sqlite.sh
#
# Notes: airlock also fsyncs each CSV and writes ro-crate-metadata.json (which
# hashes every file); sqlite3 does neither. Both print header + all rows.
set -euo pipefail

ROWS=${ROWS:-2000000}
REPS=${REPS:-5}
AIRLOCK_BIN=${AIRLOCK_BIN:-bin/airlock}
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/airlock-bench-sqlite}

command -v sqlite3 >/dev/null || { echo "extract_sqlite: needs the sqlite3 shell (apt-get install sqlite3)" >&2; exit 1; }
[ -x "$AIRLOCK_BIN" ] || { echo "extract_sqlite: $AIRLOCK_BIN not found; run make or set AIRLOCK_BIN" >&2; exit 1; }
AIRLOCK_BIN=$(cd "$(dirname "$AIRLOCK_BIN")" && pwd)/$(basename "$AIRLOCK_BIN")

mkdir -p "$WORK"
DB="$WORK/bench-$ROWS.db"
if [ ! -s "$DB" ]; then
	echo "building $DB ($ROWS rows) ..." >&2
	rm -f "$DB.tmp"
	sqlite3 "$DB.tmp" >/dev/null <<SQL
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE t(id INTEGER PRIMARY KEY, score REAL, name TEXT, note TEXT, visits INTEGER);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $ROWS)
INSERT INTO t SELECT x, x * 0.37 + (random() % 1000) / 7.0, 'patient_' || hex(randomblob(5)),
  CASE WHEN x % 3 = 0 THEN NULL WHEN x % 3 = 1 THEN 'note, with "quotes" ' || x ELSE 'plain note ' || x END,
  abs(random() % 500)
FROM c;
SQL
	mv "$DB.tmp" "$DB"
fi

cat > "$WORK/ds.json" <<JSON
{"apiVersion":"xlscsde.nhs.uk/v1","kind":"AnalyticsWorkspaceDataSource","metadata":{"name":"bench"},
 "spec":{"type":"Import","displayName":"bench","description":"bench","license":"bench",
  "publisher":{"organisation":"bench","contact":{"name":"bench","role":"bench"}},"project":{"id":"bench"},
  "connections":[{"type":"sqlite","name":"db","url":"sqlite://$DB"}],
  "objects":[{"table":{"name":"t","connection":"db"}}]}}
JSON

now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

ours=() peer=()
for ((i = 1; i <= REPS; i++)); do
	rm -rf "$WORK/out" "$WORK/peer.csv"
	t0=$(now_ns)
	"$AIRLOCK_BIN" run-job --quiet --datasource "$WORK/ds.json" --output "$WORK/out"
	t1=$(now_ns)
	sqlite3 -csv -header "$DB" "select * from t" > "$WORK/peer.csv"
	t2=$(now_ns)
	ours+=($(( (t1 - t0) / 1000 )))
	peer+=($(( (t2 - t1) / 1000 )))
	echo "rep $i: airlock $(( (t1 - t0) / 1000000 )) ms, sqlite3 $(( (t2 - t1) / 1000000 )) ms" >&2
done

# Same records? (sqlite3 prints REAL with 15 digits, airlock with round-trip
# precision and "" for empty strings, so compare counts, not bytes.)
ours_lines=$(wc -l < "$WORK/out/t.csv")
peer_lines=$(wc -l < "$WORK/peer.csv")
[ "$ours_lines" = "$peer_lines" ] || echo "WARNING: line counts differ: airlock $ours_lines, sqlite3 $peer_lines" >&2

mo=$(printf '%s\n' "${ours[@]}" | median)
mp=$(printf '%s\n' "${peer[@]}" | median)
awk -v rows="$ROWS" -v mo="$mo" -v mp="$mp" -v reps="$REPS" -v so="$(stat -c %s "$WORK/out/t.csv")" \
    -v sp="$(stat -c %s "$WORK/peer.csv")" 'BEGIN {
	ro = rows / (mo / 1e6); rp = rows / (mp / 1e6);
	printf "extract_sqlite: %d rows, median of %d\n", rows, reps;
	printf "  airlock run-job : %8.3f s  %12.0f rows/s  (%d bytes)\n", mo / 1e6, ro, so;
	printf "  sqlite3 -csv    : %8.3f s  %12.0f rows/s  (%d bytes)\n", mp / 1e6, rp, sp;
	printf "  ratio airlock/sqlite3 (rows/s): %.2fx  (goal >= 0.80x)\n", ro / rp;
}'
rm -rf "$WORK/out" "$WORK/peer.csv"
