#!/usr/bin/env bash
# Builds the test cluster from Go modules with the ordinary `go` client (no Docker, no binary
# downloads) and caches the binaries outside git, keyed on the pinned versions.
#   tests/cluster/build.sh          control plane: etcd, kube-apiserver, -controller-manager,
#                                   -scheduler, kubectl, helm, the LWS CRD
#   tests/cluster/build.sh node     also the node test bed: kubelet, kube-proxy, the LWS
#                                   controller, CoreDNS, kwok and the pause binary, plus the
#                                   monitoring tools below
#   tests/cluster/build.sh monitoring   also prometheus, promtool and the Prometheus Operator's CRDs
#                                   (the chart's monitors, rules and dashboard checks)
# Prints the cache directory last. Env: SGLANG_FLEET_CACHE (default ~/.cache/sglang-fleet).
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
[ "${1:-}" = node ] && k8s_bins+=(kubelet kube-proxy)

# A throwaway wrapper module that requires $1@$2 and builds package $3 into $4. Modules with
# replace directives (etcd, lws, kwok) refuse `go install pkg@v`, and the proxy here refuses the
# version lists that `go install` reads for some of them; a wrapper module builds all of them.
build_wrapped() {
  local module=$1 version=$2 pkg=$3 out=$4 ldflags=${5:-}
  local work; work=$(mktemp -d)
  (cd "$work" && go mod init fleet/wrapper >/dev/null 2>&1 \
    && { go get "$pkg@$version" >/dev/null 2>&1 || go get "$pkg@$version"; } \
    && go build -trimpath -ldflags "-s -w $ldflags" -o "$work/bin" "$pkg") || { rm -rf "$work"; return 1; }
  mkdir -p "$(dirname "$out")" && mv "$work/bin" "$out"
  rm -rf "$work"
}

build_etcd() {
  [ -x "$etcd_dir/etcd" ] && return
  log "building etcd $ETCD_VERSION (first time only, about 1 min)"
  build_wrapped go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$etcd_dir/etcd"
  log "etcd ready: $etcd_dir/etcd"
}

build_kubernetes() {
  local missing=() b
  for b in "${k8s_bins[@]}"; do [ -x "$k8s_dir/$b" ] || missing+=("$b"); done
  [ ${#missing[@]} = 0 ] && return
  local v=${KUBERNETES_VERSION#v} work gomod
  local major=${v%%.*} minor; minor=${v#*.}; minor=${minor%%.*}
  local staging="v0.$minor.${v##*.}"
  log "building ${missing[*]} $KUBERNETES_VERSION (first time only: ~1.5 GB of modules, 4-6 min on 2 cores; kubelet and kube-proxy add ~30 s once the others are built)"
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
  log "compiling (progress: one line per finished binary)"
  mkdir -p "$work/out" "$k8s_dir"
  for b in "${missing[@]}"; do
    go build -trimpath -ldflags "-s -w$ld" -o "$work/out/$b" "k8s.io/kubernetes/cmd/$b"
    mv "$work/out/$b" "$k8s_dir/$b"
    log "  built $b"
  done
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

module_dir() { go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)",/\1/p'; }

lws_crd() {
  local dir; dir=$(module_dir sigs.k8s.io/lws "$LWS_VERSION")
  local crd="$dir/config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml"
  [ -f "$crd" ] || { echo "LWS CRD not found in $dir" >&2; exit 1; }
  mkdir -p "$cache/crds/lws-$LWS_VERSION"
  cp -f "$dir"/config/crd/bases/*.yaml "$cache/crds/lws-$LWS_VERSION/"
  chmod u+w "$cache/crds/lws-$LWS_VERSION/"*.yaml
}

# -- the node test bed ---------------------------------------------------------------------------
build_lws() {
  local out="$cache/bin/lws-$LWS_VERSION/lws-controller-manager"
  [ -x "$out" ] && return
  log "building the LeaderWorkerSet controller $LWS_VERSION (first time only, about 2 min)"
  build_wrapped sigs.k8s.io/lws "$LWS_VERSION" sigs.k8s.io/lws/cmd "$out" \
    "-X sigs.k8s.io/lws/pkg/version.GitVersion=$LWS_VERSION"
  # the webhook manifests travel with the binary (the node bed registers them on loopback)
  local dir; dir=$(module_dir sigs.k8s.io/lws "$LWS_VERSION")
  cp -f "$dir/config/webhook/manifests.yaml" "$(dirname "$out")/webhooks.yaml"
  chmod u+w "$(dirname "$out")/webhooks.yaml"
  log "LWS controller ready: $out"
}

build_kwok() {
  local out="$cache/bin/kwok-$KWOK_VERSION/kwok"
  [ -x "$out" ] && return
  log "building kwok $KWOK_VERSION (first time only, about 2 min)"
  build_wrapped sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok "$out"
  # the bare binary embeds no stages; keep the module's stage files beside it
  local dir; dir=$(module_dir sigs.k8s.io/kwok "$KWOK_VERSION")
  mkdir -p "$(dirname "$out")/stage"
  cp -rf "$dir/kustomize/stage/." "$(dirname "$out")/stage/"
  chmod -R u+w "$(dirname "$out")/stage"
  log "kwok ready: $out"
}

build_coredns() {
  local out="$cache/bin/coredns-$COREDNS_VERSION/coredns"
  [ -x "$out" ] && return
  log "building CoreDNS $COREDNS_VERSION with the plugins cluster DNS needs (first time only, about 2 min)"
  local work; work=$(mktemp -d); trap 'rm -rf "$work"' RETURN
  # only the plugins our Corefile uses: compiles in about half the time of the full set
  cat > "$work/main.go" <<'GO'
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
	"github.com/coredns/coredns/coremain"
)

func main() { coremain.Run() }
GO
  (cd "$work" && go mod init fleet/coredns >/dev/null 2>&1 \
    && { go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null 2>&1 \
         || go get "github.com/coredns/coredns@$COREDNS_VERSION"; } \
    && go build -trimpath -ldflags "-s -w" -o "$work/coredns" .)
  mkdir -p "$(dirname "$out")" && mv "$work/coredns" "$out"
  log "CoreDNS ready: $out"
}

# prometheus and promtool for the monitoring checks: only the two commands, without the embedded web
# UI (the builtinassets tag stays off) and with static and file discovery only (remove_all_sd drops
# the cloud and Kubernetes discovery SDKs, most of the compile time): the tests need the HTTP API,
# static scrape targets and the rule checker.
build_prometheus() {
  local dir="$cache/bin/prometheus-$PROMETHEUS_VERSION" b
  [ -x "$dir/prometheus" ] && [ -x "$dir/promtool" ] && return
  local release; release=$(module_dir github.com/prometheus/prometheus "$PROMETHEUS_VERSION")
  release=$(cat "$release/VERSION")
  log "building prometheus and promtool $release (first time only, about 6 min on 2 cores)"
  local ld="-X github.com/prometheus/common/version.Version=$release"
  ld+=" -X github.com/prometheus/common/version.Revision=$PROMETHEUS_VERSION"
  for b in promtool prometheus; do
    [ -x "$dir/$b" ] || GOFLAGS="$GOFLAGS -tags=remove_all_sd" build_wrapped github.com/prometheus/prometheus "$PROMETHEUS_VERSION" \
      "github.com/prometheus/prometheus/cmd/$b" "$dir/$b" "$ld"
  done
  log "prometheus ready: $dir"
}

# The Prometheus Operator's CRDs for the objects the chart renders (PodMonitor, ServiceMonitor,
# PrometheusRule): the monitoring tests validate them on the real API server.
prometheus_operator_crds() {
  local out="$cache/crds/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION" kind
  local dir; dir=$(module_dir github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION")
  mkdir -p "$out"
  for kind in podmonitors servicemonitors prometheusrules; do
    cp -f "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$out/"
  done
  chmod u+w "$out"/*.yaml
}

# The sandbox ("pause") container: the real pause.c from the Kubernetes module, static.
build_pause() {
  local out="$cache/bin/pause-$KUBERNETES_VERSION/pause"
  [ -x "$out" ] && return
  command -v gcc >/dev/null || { echo "gcc is required to build the pause binary" >&2; exit 1; }
  local dir; dir=$(module_dir k8s.io/kubernetes "$KUBERNETES_VERSION")
  mkdir -p "$(dirname "$out")"
  gcc -Os -static -DVERSION="$KUBERNETES_VERSION" -o "$out.tmp" "$dir/build/pause/linux/pause.c"
  strip "$out.tmp" && mv "$out.tmp" "$out"
  log "pause ready: $out"
}

command -v go >/dev/null || { echo "go is required to build the test cluster (Go >= 1.26)" >&2; exit 1; }
build_etcd
build_kubernetes
build_helm
lws_crd
if [ "${1:-}" = node ]; then
  build_lws
  build_kwok
  build_coredns
  build_pause
fi
case "${1:-}" in node|monitoring) build_prometheus; prometheus_operator_crds ;; esac
echo "$cache"
