#!/usr/bin/env bash
# Installs what airlock needs on a Debian 12 machine.
#   scripts/bootstrap.sh build   libraries and tools to build and run
#   scripts/bootstrap.sh test    ... plus what the tests need (Python venv, servers)
# Idempotent and quiet when everything is already there. Heavy, reusable
# downloads are cached outside the repository under $AIRLOCK_CACHE
# (default ~/.cache/airlock), keyed by version.
set -euo pipefail
mode=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${AIRLOCK_CACHE:-$HOME/.cache/airlock}
mkdir -p "$cache"

build_pkgs=(gcc make pkg-config libmicrohttpd-dev libjansson-dev libyaml-dev libsqlite3-dev
	libsodium-dev libssl-dev libcurl4-openssl-dev zlib1g-dev libpq-dev libmariadb-dev sqlite3 ca-certificates
	libcjose-dev nodejs)
# (nodejs and npm install the upload widget's tus-js-client at build time:
# scripts/web-deps.sh; npm is added below when missing)
# Real PostgreSQL and MariaDB servers (and their command-line clients, the
# benchmark's peers) for the runner's tests.
test_pkgs=(libcmocka-dev clang libclang-rt-14-dev valgrind python3-venv openssl
	postgresql postgresql-client mariadb-server mariadb-client time
	maven openjdk-17-jre-headless nodejs chromium fonts-liberation)
# (maven fetches Keycloak for the OIDC tests, which runs on Java 17: scripts/keycloak.sh)
# (nodejs runs playwright-core, which drives Debian's chromium in the browser
# tests; fonts-liberation gives their screenshots the common web font metrics:
# scripts/browser-tools.sh, docs/testing-browser.md)

want=("${build_pkgs[@]}")
[ "$mode" = test ] && want+=("${test_pkgs[@]}")
# Debian's nodejs comes without npm (a package of its own); NodeSource's
# nodejs carries npm and conflicts with that package, so ask for it only
# when there is no npm at all.
if ! command -v npm >/dev/null 2>&1; then want+=(npm); fi

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "bootstrap: installing Debian packages: ${missing[*]}"
	sudo_cmd=""
	[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo_cmd apt-get update -q </dev/null >/dev/null
	$sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >/dev/null
fi

# The upload widget's browser library, pinned, from npm into the cache; the
# build embeds it (the Makefile calls the same script).
"$here/scripts/web-deps.sh"

if [ "$mode" = test ]; then
	# Python for pytest end-to-end tests, in a venv cached by requirements hash.
	req="$here/tests/requirements.txt"
	key=$(sha256sum "$req" | cut -c1-16)
	venv="$cache/venv-$key"
	if [ ! -x "$venv/bin/pytest" ]; then
		echo "bootstrap: creating Python environment $venv"
		rm -rf "$venv.tmp"
		python3 -m venv "$venv.tmp"
		"$venv.tmp/bin/pip" install -q --disable-pip-version-check -r "$req" </dev/null
		mv "$venv.tmp" "$venv"
	fi
	ln -sfn "$venv" "$cache/venv-current"
	# playwright-core for the browser tests, pinned, cached by version.
	"$here/scripts/browser-tools.sh" >/dev/null
fi
