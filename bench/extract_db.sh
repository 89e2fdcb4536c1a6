#!/usr/bin/env bash
# Runners against real PostgreSQL and MariaDB servers (issue 5): the native
# runner, the dlt runner (CSV, Parquet) and psql / mariadb as the practical
# limit, on ROWS (5,000,000) rows, REPS (3) times. See bench/extract_db.py and
# docs/benchmarks.md.
#
#   make && bench/extract_db.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${AIRLOCK_CACHE:-$HOME/.cache/airlock}/venv-current/bin/python"
[ -x "$py" ] || { echo "extract_db.sh: run scripts/bootstrap.sh test first (it makes $py)" >&2; exit 2; }
exec "$py" "$here/extract_db.py" "$@"
