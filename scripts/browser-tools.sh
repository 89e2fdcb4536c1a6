#!/usr/bin/env bash
# Installs what the browser tests (tests/e2e/test_browser_*.py) drive, once,
# and prints the playwright-core package directory on stdout:
#
#   pw=$(scripts/browser-tools.sh)
#   AIRLOCK_PLAYWRIGHT_CORE=$pw node tests/browser/scenario.mjs ...
#
# - Chromium is Debian's (/usr/bin/chromium), installed by
#   `scripts/bootstrap.sh test`; Playwright never downloads a browser of its own.
# - playwright-core, at the exact version tests/browser/package.json pins (it
#   has no dependencies, so the pin is the whole tree), from the npm registry
#   through npm, into ${AIRLOCK_CACHE:-~/.cache/airlock}/playwright-<version>.
#   A new pin makes a new directory; an old one is never modified. It is built
#   beside its final name and renamed when npm has finished, under a lock so
#   that concurrent callers wait for one install instead of racing. No package
#   lock file is written (it would name the registry's host).
# Quiet when everything is there; npm's output goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${AIRLOCK_CACHE:-$HOME/.cache/airlock}
pkg="$here/tests/browser/package.json"

version=$(sed -n 's/^ *"playwright-core": *"\([0-9][0-9.]*\)".*/\1/p' "$pkg")
[ -n "$version" ] || { echo "browser-tools: no exact playwright-core version in $pkg" >&2; exit 1; }
dir="$cache/playwright-$version"
mod="$dir/node_modules/playwright-core"

if [ ! -f "$mod/package.json" ]; then
	command -v npm >/dev/null 2>&1 || { echo "browser-tools: npm not found (Debian package nodejs)" >&2; exit 1; }
	mkdir -p "$cache"
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$cache/playwright-$version.lock"
		flock 9
	fi
	if [ ! -f "$mod/package.json" ]; then
		echo "browser-tools: installing playwright-core $version into $dir" >&2
		rm -rf "$dir.tmp"
		mkdir -p "$dir.tmp"
		# --ignore-scripts: nothing may run at install time (playwright-core
		# has no install script today; this keeps it so).
		PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$dir.tmp" --no-save --no-package-lock \
			--no-audit --no-fund --ignore-scripts --loglevel=error "playwright-core@$version" </dev/null >&2
		got=$(node -p "require('$dir.tmp/node_modules/playwright-core/package.json').version")
		[ "$got" = "$version" ] || { echo "browser-tools: npm installed playwright-core $got, not $version" >&2; exit 1; }
		rm -rf "$dir"
		mv "$dir.tmp" "$dir"
	fi
fi
[ -x /usr/bin/chromium ] || { echo "browser-tools: /usr/bin/chromium missing: run scripts/bootstrap.sh test" >&2; exit 1; }
echo "$mod"
