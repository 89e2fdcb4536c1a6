#!/usr/bin/env bash
# The browser libraries of the upload widget, from npm at build time (never
# from a CDN, never at run time).
#
#   scripts/web-deps.sh            install them into the cache (bootstrap.sh)
#   scripts/web-deps.sh --package-dir
#                                  print the installed tus-js-client package's
#                                  directory (for tests that drive it with
#                                  node); installs nothing: exits 1 if the
#                                  cache does not have it
#   scripts/web-deps.sh OUTDIR     ... and write what the build embeds:
#       OUTDIR/tus.min.js          tus-js-client's browser bundle, prefixed
#                                  with its name, version and licence
#       OUTDIR/tus-licenses.txt    the licences of tus-js-client and of every
#                                  package npm installed with it
#
# tus-js-client is pinned to an exact version and its package is checked
# against the integrity hash npm records for it. It is installed once per
# version into $AIRLOCK_CACHE/web-tus-js-client-<version> (default
# ~/.cache/airlock), outside the repository. Needs node and npm (Debian's
# nodejs and npm; scripts/bootstrap.sh installs them).
set -euo pipefail
TUS_JS_CLIENT_VERSION=4.3.1
# npm's "integrity" of tus-js-client-4.3.1.tgz: a changed package fails here.
TUS_JS_CLIENT_INTEGRITY="sha512-ZLeYmjrkaU1fUsKbIi8JML52uAocjEZtBx4DKjRrqzrZa0O4MYwT6db+oqePlspV+FxXJAyFBc/L5gwUi2OFsg=="

cache=${AIRLOCK_CACHE:-$HOME/.cache/airlock}
dir="$cache/web-tus-js-client-$TUS_JS_CLIENT_VERSION"
pkg="$dir/node_modules/tus-js-client"

if [ "${1:-}" = "--package-dir" ]; then
	if [ ! -f "$dir/.complete" ] || [ ! -f "$pkg/package.json" ]; then
		echo "web-deps: tus-js-client $TUS_JS_CLIENT_VERSION is not installed in $dir: run scripts/bootstrap.sh build (or scripts/web-deps.sh)" >&2
		exit 1
	fi
	echo "$pkg"
	exit 0
fi

if [ ! -f "$dir/.complete" ]; then
	if ! command -v npm >/dev/null 2>&1; then
		echo "web-deps: npm is missing: run scripts/bootstrap.sh build (it installs Debian's nodejs and npm)" >&2
		exit 1
	fi
	echo "web-deps: installing tus-js-client $TUS_JS_CLIENT_VERSION into $dir" >&2
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	# --ignore-scripts: nothing of the package runs on this machine; only its
	# prebuilt browser bundle is used.
	(cd "$dir.tmp" && npm install --prefix "$dir.tmp" --no-audit --no-fund --ignore-scripts \
		--loglevel=error "tus-js-client@$TUS_JS_CLIENT_VERSION" </dev/null >&2)
	got=$(node -e 'const l = require(process.argv[1]); const p = l.packages["node_modules/tus-js-client"] || {};
		console.log((p.version || "") + " " + (p.integrity || ""))' "$dir.tmp/package-lock.json")
	if [ "$got" != "$TUS_JS_CLIENT_VERSION $TUS_JS_CLIENT_INTEGRITY" ]; then
		echo "web-deps: tus-js-client from npm is not the pinned package (got: $got)" >&2
		exit 1
	fi
	touch "$dir.tmp/.complete"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
fi

[ $# -eq 0 ] && exit 0
out=$1
mkdir -p "$out"
bundle="$pkg/dist/tus.min.js"
if [ ! -s "$bundle" ] || [ ! -s "$pkg/LICENSE" ]; then
	echo "web-deps: $bundle or its LICENSE is missing: remove $dir and run again" >&2
	exit 1
fi

# The bundle as served: a comment naming it and carrying its licence (the
# minified file has none), then the package's bytes unchanged. "/*!" keeps
# it through any later minifier. The licence text has no "*/".
{
	printf '/*! tus-js-client %s (https://github.com/tus/tus-js-client), dist/tus.min.js\n' "$TUS_JS_CLIENT_VERSION"
	printf ' * The licences of it and of the code bundled in it: /static/tus-licenses.txt\n *\n'
	sed 's/^/ * /; s/ *$//' "$pkg/LICENSE"
	printf ' */\n'
	cat "$bundle"
} >"$out/tus.min.js.tmp"
mv "$out/tus.min.js.tmp" "$out/tus.min.js"

# Every package npm installed (the bundle contains the browser parts of
# tus-js-client's dependencies), with its licence file.
node - "$dir/node_modules" >"$out/tus-licenses.txt.tmp" <<'JS'
const fs = require('fs');
const path = require('path');
const root = process.argv[2];
const names = fs.readdirSync(root).filter((n) => !n.startsWith('.')).sort();
const out = ['Third-party software in /static/tus.min.js (tus-js-client and the packages it depends on).', ''];
for (const n of names) {
  const dir = path.join(root, n);
  let pkg;
  try { pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')); } catch (e) { continue; }
  out.push('='.repeat(72), `${pkg.name} ${pkg.version} - licence: ${pkg.license || 'see below'}`, '='.repeat(72));
  const lic = fs.readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  out.push(lic ? fs.readFileSync(path.join(dir, lic), 'utf8').trimEnd() : '(the package has no licence file; its package.json says: ' + (pkg.license || 'nothing') + ')', '');
}
process.stdout.write(out.join('\n') + '\n');
JS
mv "$out/tus-licenses.txt.tmp" "$out/tus-licenses.txt"
