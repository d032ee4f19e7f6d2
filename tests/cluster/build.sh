#!/usr/bin/env bash
# Builds the test control plane from Go modules with the ordinary `go` client (no Docker, no
# binary downloads) and caches the binaries outside git, keyed on the pinned versions.
#   tests/cluster/build.sh            build what is missing, print the bin directory last
# Env: SGLANG_FLEET_CACHE (default ~/.cache/sglang-fleet).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${SGLANG_FLEET_CACHE:-$HOME/.cache/sglang-fleet}
export GOFLAGS=-mod=mod CGO_ENABLED=0
log() { printf '[cluster-build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

k8s_dir="$cache/bin/kubernetes-$KUBERNETES_VERSION"
etcd_dir="$cache/bin/etcd-$ETCD_VERSION"
k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

build_etcd() {
  [ -x "$etcd_dir/etcd" ] && return
  log "building etcd $ETCD_VERSION (first time only, about 1 min)"
  local work; work=$(mktemp -d); trap 'rm -rf "$work"' RETURN
  # etcd's server module has replace directives, so `go install pkg@v` refuses it; a wrapper
  # module that requires it builds fine.
  (cd "$work" && go mod init fleet/etcd-build >/dev/null 2>&1 \
    && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 \
    && go build -trimpath -o "$work/etcd" go.etcd.io/etcd/server/v3)
  mkdir -p "$etcd_dir" && mv "$work/etcd" "$etcd_dir/etcd"
  log "etcd ready: $etcd_dir/etcd"
}

build_kubernetes() {
  local missing=0 b
  for b in "${k8s_bins[@]}"; do [ -x "$k8s_dir/$b" ] || missing=1; done
  [ $missing = 0 ] && return
  local v=${KUBERNETES_VERSION#v} work gomod
  local major=${v%%.*} minor; minor=${v#*.}; minor=${minor%%.*}
  local staging="v0.$minor.${v##*.}"
  log "building ${k8s_bins[*]} $KUBERNETES_VERSION (first time only: ~1.5 GB of modules, 4-6 min on 2 cores)"
  work=$(mktemp -d); trap 'rm -rf "$work"' RETURN
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  pushd "$work" >/dev/null
  go mod init fleet/k8s-build >/dev/null 2>&1
  # k8s.io/kubernetes requires its staging modules at v0.0.0 (its own replaces point into its repo
  # and are ignored for a dependency); pin each to the published v0.N.M that pairs with v1.N.M.
  # The list comes from the module's go.mod because it changes between releases.
  local m
  for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u); do
    go mod edit -replace="$m=$m@$staging"
  done
  log "resolving module graph"
  go get "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null 2>&1 || go get "k8s.io/kubernetes@$KUBERNETES_VERSION"
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local pkgs=()
  for b in "${k8s_bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  log "compiling (progress: one line per finished binary)"
  mkdir -p "$work/out"
  for b in "${k8s_bins[@]}"; do
    go build -trimpath -ldflags "-s -w$ld" -o "$work/out/$b" "k8s.io/kubernetes/cmd/$b"
    log "  built $b"
  done
  mkdir -p "$k8s_dir" && mv "$work/out/"* "$k8s_dir/"
  popd >/dev/null
  log "kubernetes binaries ready: $k8s_dir"
}

build_helm() {
  local dir="$cache/bin/helm-$HELM_VERSION"
  [ -x "$dir/helm" ] && return
  log "building helm $HELM_VERSION (first time only, about 1 min)"
  GOBIN="$dir" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "helm ready: $dir/helm"
}

lws_crd() {
  local dir
  dir=$(go mod download -json "sigs.k8s.io/lws@$LWS_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  local crd="$dir/config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
  [ -f "$crd" ] || { echo "LWS CRD not found in $dir" >&2; exit 1; }
  mkdir -p "$cache/crds/lws-$LWS_VERSION"
  cp -f "$dir"/config/crd/bases/*.yaml "$cache/crds/lws-$LWS_VERSION/"
  chmod u+w "$cache/crds/lws-$LWS_VERSION/"*.yaml
}

command -v go >/dev/null || { echo "go is required to build the test control plane (Go >= 1.26)" >&2; exit 1; }
build_etcd
build_kubernetes
build_helm
lws_crd
echo "$cache"
