#!/bin/sh
# Copies the CustomResourceDefinitions from deploy/crds/ (the one source of
# truth, also embedded into bin/airlock) into the Helm chart's crds/ folder.
#
# Why copies and not symlinks: `helm package` and chart repositories do not
# follow symlinks reliably, so the chart carries real files. The copies are
# committed; tests/kube/test_helm.py fails if they differ from deploy/crds/.
# Run this after every change to deploy/crds/*.yaml:
#
#   scripts/sync-chart-crds.sh          # copy
#   scripts/sync-chart-crds.sh --check  # exit 1 (and name the file) if out of date
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
src=$here/deploy/crds
dst=$here/deploy/helm/airlock/crds
check=0
[ "${1:-}" = "--check" ] && check=1

ls "$src"/*.yaml >/dev/null 2>&1 || { echo "sync-chart-crds: no CRDs in $src" >&2; exit 1; }
mkdir -p "$dst"
status=0
for f in "$src"/*.yaml; do
	name=$(basename "$f")
	if [ "$check" -eq 1 ]; then
		if ! cmp -s "$f" "$dst/$name"; then
			echo "sync-chart-crds: $dst/$name differs from $f: run scripts/sync-chart-crds.sh" >&2
			status=1
		fi
	else
		# Copy through a temporary file so an interrupted run never leaves half a CRD.
		cp "$f" "$dst/.$name.tmp"
		mv "$dst/.$name.tmp" "$dst/$name"
	fi
done
# A CRD removed from deploy/crds/ must not linger in the chart.
for f in "$dst"/*.yaml; do
	[ -e "$f" ] || continue
	name=$(basename "$f")
	if [ ! -e "$src/$name" ]; then
		if [ "$check" -eq 1 ]; then
			echo "sync-chart-crds: $f has no counterpart in $src: run scripts/sync-chart-crds.sh" >&2
			status=1
		else
			rm -f "$f"
		fi
	fi
done
exit $status
