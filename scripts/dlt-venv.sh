#!/usr/bin/env bash
# Creates the dlt job runner's Python virtual environment (once) and prints
# its path on stdout:
#
#   venv=$(scripts/dlt-venv.sh)
#   PYTHONPATH=runners/dlt "$venv/bin/python" -m airlock_dlt_runner --help
#
# The environment lives under ${AIRLOCK_CACHE:-$HOME/.cache/airlock}, named
# dlt-venv-<first 16 hex of the sha256 of runners/dlt/requirements.txt>, so a
# change of pins builds a new one and the old one is never modified. It is
# built in place and marked complete only when pip has finished (a move would
# break the shebangs pip writes), under a lock so concurrent callers wait for
# one build instead of racing. Quiet when it already exists; pip's output and
# progress go to stderr, so stdout is only the path.
#
# The interpreter is $AIRLOCK_PYTHON, else python3 (dlt needs Python >= 3.10).
# Packages come only from the configured Python package index, through pip.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${AIRLOCK_CACHE:-$HOME/.cache/airlock}
req="$here/runners/dlt/requirements.txt"
python=${AIRLOCK_PYTHON:-python3}

[ -r "$req" ] || { echo "dlt-venv: $req not found" >&2; exit 1; }
key=$(sha256sum "$req" | cut -c1-16)
venv="$cache/dlt-venv-$key"
done_mark="$venv/.airlock-complete"

if [ ! -f "$done_mark" ]; then
	mkdir -p "$cache"
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$cache/dlt-venv-$key.lock"
		flock 9
	fi
	# Another caller may have finished it while we waited for the lock.
	if [ ! -f "$done_mark" ]; then
		command -v "$python" >/dev/null 2>&1 || { echo "dlt-venv: $python not found (set AIRLOCK_PYTHON)" >&2; exit 1; }
		"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
			echo "dlt-venv: $python is older than 3.10, which dlt needs (set AIRLOCK_PYTHON)" >&2; exit 1; }
		echo "dlt-venv: creating $venv (takes a few minutes, once)" >&2
		rm -rf "$venv" # a build that was interrupted
		"$python" -m venv "$venv" >&2
		"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$req" </dev/null >&2
		"$venv/bin/python" -c 'import dlt, pyarrow, sqlalchemy, yaml' >&2
		touch "$done_mark"
	fi
fi
echo "$venv"
