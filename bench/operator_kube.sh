#!/usr/bin/env bash
# Benchmark of `airlock operator` against a real kube-apiserver + etcd (issue 4):
# COUNT (1000) Import datasources applied with kubectl in batches of BATCH (100),
# time until every Job exists and READY->Job latency, against a baseline of
# kubectl applying the same children directly; then operator VmRSS with
# RSS_COUNT (10000) watched datasources. See docs/benchmarks.md, "Kubernetes operator".
#
#   make && bench/operator_kube.sh
#
# Settings (environment): COUNT, BATCH, REPS (3), WORKERS (4), RSS_COUNT (0 skips),
# RSS_BATCH (500), AIRLOCK_BIN (bin/airlock), AIRLOCK_KUBE_BIN, OUT (/tmp/operator_kube.json).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${AIRLOCK_BIN:-$here/../bin/airlock}"
if ! "$bin" operator --help >/dev/null 2>&1; then
    echo "operator_kube.sh: $bin has no working 'operator' command: run 'make' first" >&2
    exit 2
fi
exec python3 "$here/operator_kube.py" "$@"
