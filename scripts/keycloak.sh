#!/usr/bin/env bash
# keycloak.sh - fetch the Keycloak server distribution (once) for the tests
# and print the directory that holds bin/kc.sh.
#
#   kc_home=$(scripts/keycloak.sh)          # download and unpack if needed
#   scripts/keycloak.sh --print             # print it if cached, exit 1 if not
#
# The distribution is org.keycloak:keycloak-quarkus-dist (tar.gz) from the
# Maven repository that the machine's own Maven is set up for, fetched with
# `mvn dependency:copy` (no host is named here). It is unpacked into
#   ${AIRLOCK_CACHE:-$HOME/.cache/airlock}/keycloak/<version>/
# keyed by version, in a temporary directory renamed into place at the end,
# so an interrupted run leaves nothing half-unpacked; a lock makes a second
# caller wait for the first. Quiet when cached; progress goes to stderr,
# stdout carries only the path. Keycloak 26 runs on Java 17 or newer
# (tests/e2e/keycloak.py picks the JDK).
#
# The version (the only thing to change to move to another release):
KEYCLOAK_VERSION="${AIRLOCK_KEYCLOAK_VERSION:-26.5.6}"

set -euo pipefail

log() { printf 'keycloak: %s\n' "$*" >&2; }
die() { printf 'keycloak: error: %s\n' "$*" >&2; exit 1; }

ROOT="${AIRLOCK_CACHE:-$HOME/.cache/airlock}/keycloak"
FINAL="$ROOT/$KEYCLOAK_VERSION"

cached() { [[ -f "$FINAL/.complete" && -x "$FINAL/bin/kc.sh" ]]; }

if cached; then
	printf '%s\n' "$FINAL"
	exit 0
fi
if [[ "${1:-}" == "--print" ]]; then
	log "not fetched yet: $FINAL (run scripts/keycloak.sh without --print)"
	exit 1
fi

command -v mvn >/dev/null || die "no 'mvn' on PATH: install Maven (Debian package maven)"
command -v flock >/dev/null || die "no 'flock' on PATH (util-linux)"
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock-$KEYCLOAK_VERSION"
if ! flock -n 9; then
	log "another keycloak.sh is fetching $KEYCLOAK_VERSION; waiting for it"
	flock 9
fi
if cached; then
	printf '%s\n' "$FINAL"
	exit 0
fi

# We hold the lock: a temporary directory left by a killed run is stale.
rm -rf "$ROOT/.fetch-$KEYCLOAK_VERSION."*
WORK="$(mktemp -d "$ROOT/.fetch-$KEYCLOAK_VERSION.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log "fetching org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION (about 200 MB, once)"
# A private local repository inside the work directory: the tarball is not
# kept twice (once in ~/.m2, once unpacked), and Maven's plugins stay in
# $ROOT/m2 so later versions reuse them.
mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$ROOT/m2" dependency:copy \
	-Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:tar.gz" \
	-DoutputDirectory="$WORK" -Dmdep.useBaseVersion=true </dev/null >&2 ||
	die "mvn could not fetch keycloak-quarkus-dist $KEYCLOAK_VERSION (set AIRLOCK_KEYCLOAK_VERSION to a served 26.x version)"
rm -rf "$ROOT/m2/org/keycloak/keycloak-quarkus-dist"
tarball="$WORK/keycloak-quarkus-dist-$KEYCLOAK_VERSION.tar.gz"
[[ -f "$tarball" ]] || die "mvn reported success but $tarball is missing"

mkdir "$WORK/unpacked"
tar -xzf "$tarball" -C "$WORK/unpacked" --no-same-owner
rm -f "$tarball"
# The archive holds one directory, keycloak-<version>.
top=("$WORK/unpacked"/*)
[[ ${#top[@]} -eq 1 && -x "${top[0]}/bin/kc.sh" ]] || die "unexpected layout in the Keycloak archive"
touch "${top[0]}/.complete"
rm -rf "$FINAL"
mv "${top[0]}" "$FINAL"
log "Keycloak $KEYCLOAK_VERSION is in $FINAL"
printf '%s\n' "$FINAL"
