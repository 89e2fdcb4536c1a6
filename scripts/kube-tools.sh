#!/usr/bin/env bash
# kube-tools.sh - build kube-apiserver, kubectl, etcd and helm from the Go module
# proxy, cached outside the repository, keyed by version.
#
#   scripts/kube-tools.sh            # build if needed; last stdout line = bin dir
#   scripts/kube-tools.sh --print    # print the bin dir if cached, exit 1 if not
#
# Cache: ${AIRLOCK_CACHE:-$HOME/.cache/airlock}/kube/<k8s>-<etcd>-<helm>/bin/
# A second run is instant. Progress goes to stderr; stdout carries only the bin
# dir. The build happens in a temporary directory next to the cache entry and is
# renamed into place at the end, so an interrupted run leaves nothing half-built.
# See docs/kubernetes-testing.md.
#
# The versions (the only things to change to move to another release):
K8S_VERSION="${AIRLOCK_K8S_VERSION:-v1.35.4}"     # k8s.io/kubernetes (kube-apiserver, kubectl)
ETCD_VERSION="${AIRLOCK_ETCD_VERSION:-v3.6.16}"   # go.etcd.io/etcd/server/v3
HELM_VERSION="${AIRLOCK_HELM_VERSION:-v3.22.0}"   # helm.sh/helm/v3
# The Go toolchain: the machine's own Go is used; set AIRLOCK_GOTOOLCHAIN (for
# example go1.27.3) only if a module above needs a newer Go than the machine has.
# GOPROXY is the machine's own (`go env GOPROXY`); this script names no host.

set -euo pipefail

log() { printf 'kube-tools: %s\n' "$*" >&2; }
die() { printf 'kube-tools: error: %s\n' "$*" >&2; exit 1; }

CACHE_ROOT="${AIRLOCK_CACHE:-$HOME/.cache/airlock}/kube"
KEY="${K8S_VERSION}-${ETCD_VERSION}-${HELM_VERSION}"
FINAL="$CACHE_ROOT/$KEY"
BIN="$FINAL/bin"
TOOLS=(kube-apiserver kubectl etcd helm)

cached() {
    [[ -f "$FINAL/.complete" ]] || return 1
    local t
    for t in "${TOOLS[@]}"; do [[ -x "$BIN/$t" ]] || return 1; done
}

if cached; then
    printf '%s\n' "$BIN"
    exit 0
fi
if [[ "${1:-}" == "--print" ]]; then
    log "not built yet: $BIN (run scripts/kube-tools.sh without --print)"
    exit 1
fi

command -v go >/dev/null || die "no 'go' on PATH: install Go (1.25 or newer) first"
command -v flock >/dev/null || die "no 'flock' on PATH (util-linux)"

mkdir -p "$CACHE_ROOT"
# One builder per key at a time; a second caller waits, then finds the cache.
exec 9>"$CACHE_ROOT/.lock-$KEY"
if ! flock -n 9; then
    log "another kube-tools.sh is building $KEY; waiting for it"
    flock 9
fi
if cached; then
    printf '%s\n' "$BIN"
    exit 0
fi

# A build killed outright (SIGKILL, power loss) leaves its temporary
# directory behind; we hold the lock, so any such directory is stale.
rm -rf "$CACHE_ROOT/.build-$KEY."*
WORK="$(mktemp -d "$CACHE_ROOT/.build-$KEY.XXXXXX")"
CHILD=""
cleanup() {
    if [[ -n "$CHILD" ]]; then kill -TERM "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
    rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT
trap 'log "interrupted; removing $WORK"; exit 130' INT TERM HUP

# Run a long command in the background and wait for it, so that a signal is
# handled at once (bash defers traps while a foreground child runs) and the
# child is stopped by cleanup().
run() {
    "$@" >&2 &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
export GOTOOLCHAIN="${AIRLOCK_GOTOOLCHAIN:-local}"
BUILD_FLAGS=(-p 2 -trimpath)
mkdir -p "$WORK/bin"
START=$SECONDS

log "building $KEY into $WORK (go: $(go env GOVERSION), GOTOOLCHAIN=$GOTOOLCHAIN)"

# ---- kube-apiserver + kubectl ---------------------------------------------
# `go install k8s.io/kubernetes/...` is refused because its go.mod has replace
# directives (staging modules -> ./staging/src/...). A wrapper module requires
# k8s.io/kubernetes and replaces each staging module with the published v0.X.Y.
build_kubernetes() {
    local dir="$WORK/kubernetes" gomod minor staging
    mkdir -p "$dir"
    log "kubernetes $K8S_VERSION: reading its go.mod"
    gomod="$(go -C "$dir" mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
        | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@$K8S_VERSION (go mod download)"
    staging="$(sed -n '/^replace (/,/^)/p' "$gomod" \
        | awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }')"
    [[ -n "$staging" ]] || die "no staging replace block in $gomod"
    minor="v0.${K8S_VERSION#v1.}"
    {
        printf 'module airlock.local/kubetools\n\ngo %s\n\n' "$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"
        printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
        local m
        for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$minor"; done
        printf ')\n'
    } >"$dir/go.mod"
    printf 'package tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n)\n' >"$dir/tools.go"
    local pkg="k8s.io/component-base/version" cpkg="k8s.io/client-go/pkg/version"
    local maj=1 min="${K8S_VERSION#v1.}"; min="${min%%.*}"
    local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    local ld="-s -w"
    local p
    for p in "$pkg" "$cpkg"; do
        ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$maj -X $p.gitMinor=$min"
        ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
    done
    log "kubernetes $K8S_VERSION: resolving modules (go mod tidy)"
    run go -C "$dir" mod tidy || die "go mod tidy failed for k8s.io/kubernetes@$K8S_VERSION (see above)"
    log "kubernetes $K8S_VERSION: building kube-apiserver and kubectl (several minutes on 2 cores)"
    run go -C "$dir" build "${BUILD_FLAGS[@]}" -ldflags="$ld" -o "$WORK/bin/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl \
        || die "building kube-apiserver/kubectl $K8S_VERSION failed (see above)"
}

# ---- etcd -------------------------------------------------------------------
# In etcd 3.5+ the etcd main package is the root of go.etcd.io/etcd/server/v3.
build_etcd() {
    local dir="$WORK/etcd"
    mkdir -p "$dir"
    printf 'module airlock.local/etcdtools\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$dir/go.mod"
    printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\n' >"$dir/tools.go"
    log "etcd $ETCD_VERSION: resolving modules"
    run go -C "$dir" mod tidy || die "go mod tidy failed for go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    log "etcd $ETCD_VERSION: building"
    run go -C "$dir" build "${BUILD_FLAGS[@]}" -ldflags="-s -w" -o "$WORK/bin/etcd" go.etcd.io/etcd/server/v3 \
        || die "building etcd $ETCD_VERSION failed (see above)"
}

# ---- helm -------------------------------------------------------------------
build_helm() {
    local dir="$WORK/helm"
    mkdir -p "$dir"
    printf 'module airlock.local/helmtools\n\ngo 1.24\n\nrequire helm.sh/helm/v3 %s\n' "$HELM_VERSION" >"$dir/go.mod"
    printf 'package tools\n\nimport _ "helm.sh/helm/v3/pkg/action"\n' >"$dir/tools.go"
    log "helm $HELM_VERSION: resolving modules"
    run go -C "$dir" mod tidy || die "go mod tidy failed for helm.sh/helm/v3@$HELM_VERSION"
    log "helm $HELM_VERSION: building"
    local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    run go -C "$dir" build "${BUILD_FLAGS[@]}" -ldflags="$ld" -o "$WORK/bin/helm" helm.sh/helm/v3/cmd/helm \
        || die "building helm $HELM_VERSION failed (see above)"
}

build_etcd
build_helm
build_kubernetes

for t in "${TOOLS[@]}"; do
    [[ -x "$WORK/bin/$t" ]] || die "$t was not built"
done
"$WORK/bin/kube-apiserver" --version >&2
"$WORK/bin/kubectl" version --client >&2
"$WORK/bin/etcd" --version >&2
"$WORK/bin/helm" version --short >&2

# Keep only the binaries; the wrapper modules were just scaffolding.
rm -rf "$WORK/kubernetes" "$WORK/etcd" "$WORK/helm"
{
    printf 'kubernetes=%s\netcd=%s\nhelm=%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$HELM_VERSION"
    printf 'go=%s\nbuilt=%s\nseconds=%s\n' "$(go env GOVERSION)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$((SECONDS - START))"
} >"$WORK/.complete"
chmod 755 "$WORK"
rm -rf "$FINAL"
mv "$WORK" "$FINAL"
trap - EXIT
log "built $KEY in $((SECONDS - START)) s"
printf '%s\n' "$BIN"
