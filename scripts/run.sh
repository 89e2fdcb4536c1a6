#!/usr/bin/env bash
# Starts the embedded airlock for `make run`: data in ./var, API on
# 127.0.0.1:8080 (override with AIRLOCK_LISTEN / AIRLOCK_DATA_DIR).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
data=${AIRLOCK_DATA_DIR:-$here/var}
listen=${AIRLOCK_LISTEN:-127.0.0.1:8080}
cat <<MSG
Starting the embedded airlock (data in $data).
The CLI is $here/bin/airlock; the README's walkthrough shows the Import flow.
MSG
exec "$here/bin/airlock" serve --data-dir "$data" --listen "$listen" --log-format text
