#!/usr/bin/env bash
# `make images`: builds the operator and runtime images from our own Dockerfiles with buildah (no
# daemon, no registry), on a base image made locally from Debian packages, and exports each as an
# OCI archive that the node test bed imports into its containerd (tests/cluster/node.py).
# Cached keyed on the inputs (Dockerfile, pyproject.toml, the package sources, the base recipe):
# a second run with nothing changed does nothing. Prints the image names last.
#   tests/cluster/images.sh [operator|runtime|previous|smg ...]    (default: all four; previous is
#   the operator image of PREVIOUS_RELEASE, for the chart upgrade test; smg is the router, built
#   from its PyPI wheel by tests/cluster/smg.Dockerfile)
# Env: SGLANG_FLEET_CACHE (default ~/.cache/sglang-fleet).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${SGLANG_FLEET_CACHE:-$HOME/.cache/sglang-fleet}
dir="$cache/images"
log() { printf '[images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
"$here/node-deps.sh"
mkdir -p "$dir/archives" "$dir/tmp"

# buildah keeps its storage under our cache; it mounts overlays, so every buildah call runs in a
# private mount namespace (a killed build leaves no mount on the host) with an overlay on /var/lib,
# where buildah writes a cache file of its own (/var/lib/containers/cache) that we keep out of
# the host.
cat > "$dir/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$dir/tmp/runroot"
CONF
bh() {
  CONTAINERS_STORAGE_CONF="$dir/storage.conf" TMPDIR="$dir/tmp" \
    unshare --mount --propagation private sh -c '
      mkdir -p "$0/varlib/upper" "$0/varlib/work" &&
      mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$0/varlib/upper,workdir=$0/varlib/work" /var/lib &&
      exec buildah "$@"' "$dir/tmp" "$@"
}

# -- base: Debian bookworm + python3 (what python:3.11-slim gives the published images) --------
BASE_RECIPE="bookworm minbase python3 python3-venv python3-pip ca-certificates v1"
base_key=$(printf '%s' "$BASE_RECIPE" | sha256sum | cut -c1-12)
BASE_IMAGE="localhost/sglang-fleet/debian-python:$base_key"
build_base() {
  bh inspect --type image "$BASE_IMAGE" >/dev/null 2>&1 && return
  local mirror rootfs ctr mnt
  # the first Debian archive apt uses here (deb822 .sources or a one-line sources.list)
  mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
             | sed -n 's/^URIs: *//p; s/^deb \(\[[^]]*\] \)\?\(http[^ ]*\) bookworm .*/\2/p' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  log "base image: debootstrap bookworm from $mirror (first time only, about 1 min)"
  rootfs=$(mktemp -d "$dir/tmp/rootfs.XXXXXX")
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$dir/tmp/debootstrap.log" 2>&1 \
    || { tail -20 "$dir/tmp/debootstrap.log" >&2; rm -rf "$rootfs"; exit 1; }
  # what an image does not need: apt lists and caches, docs, locales, device nodes, the host's DNS
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc \
    "$rootfs"/usr/share/man "$rootfs"/usr/share/locale "$rootfs"/dev/* "$rootfs"/etc/resolv.conf
  ctr=$(bh from scratch)
  # copy with numeric owners inside the same namespace as the mount (buildah copy would chown)
  CONTAINERS_STORAGE_CONF="$dir/storage.conf" TMPDIR="$dir/tmp" unshare --mount --propagation private \
    sh -c 'mnt=$(buildah mount "$1") && tar -C "$2" --numeric-owner -cf - . | tar -C "$mnt" --numeric-owner -xf - && buildah umount "$1" >/dev/null' \
    sh "$ctr" "$rootfs"
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/sh "$ctr"
  bh commit --rm -q "$ctr" "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  log "base image ready: $BASE_IMAGE"
}

# -- our images ---------------------------------------------------------------------------------
inputs_key() {  # dockerfile sources: the image's inputs (its Dockerfile, the packaging files, the
  # package sources it copies)
  local dockerfile=$1 sources=$2
  (cd "$repo" && { echo "$BASE_IMAGE"; sha256sum "$dockerfile" pyproject.toml README.md;
    git ls-files -co --exclude-standard "$sources" | grep -v '/Dockerfile$' | sort | xargs sha256sum; }) \
    | sha256sum | cut -c1-12
}

bud_and_export() {  # dockerfile context image archive [more bud flags]
  # the host's CA bundle, because HTTPS to PyPI is re-signed on our machines; pip's downloads are
  # kept in the build's cache mount under $dir/tmp between builds
  bh bud --pull=never --network host --layers=true -q --build-arg BASE_IMAGE="$BASE_IMAGE" \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    "${@:5}" -f "$1" -t "$3" "$2" >/dev/null
  log "exporting $3"
  bh push -q "$3" "oci-archive:$4.part:$3"
  mv "$4.part" "$4"
}

build_keyed() {  # name key dockerfile context note [bud flags] -> $dir/archives/<name>-<key>.tar
  local name=$1 key=$2 dockerfile=$3 context=$4 note=$5 image archive t0
  shift 5
  image="localhost/sglang-fleet/$name:$key"
  archive="$dir/archives/$name-$key.tar"
  echo "$image" > "$dir/$name.current"
  [ -f "$archive" ] && return
  t0=$(date +%s)
  log "building $image from ${dockerfile#"$repo"/} ($note)"
  rm -f "$dir/archives/$name-"*.tar
  bud_and_export "$dockerfile" "$context" "$image" "$archive" "$@"
  log "$image ready in $(( $(date +%s) - t0 ))s ($(du -h "$archive" | cut -f1) archive)"
  # older tags of this image are no use; their layers stay shared with the new one where equal
  bh images --format '{{.Name}}:{{.Tag}}' | grep "^localhost/sglang-fleet/$name:" | grep -v ":$key$" \
    | xargs -r -n1 sh -c 'CONTAINERS_STORAGE_CONF="$0" buildah rmi "$1" >/dev/null 2>&1 || true' "$dir/storage.conf" || true
}

build_image() {  # name dockerfile sources note: one of our images, keyed on its inputs
  build_keyed "$1" "$(inputs_key "$2" "$3")" "$repo/$2" "$repo" "$4"
}

# The operator image of the release an upgrade test starts from (PREVIOUS_RELEASE in versions.env):
# that commit's sources, packaged by today's Dockerfile (the old one pulled its base from a registry).
build_previous() {
  local rev name=previous-sglang-operator src image archive t0
  git -C "$repo" cat-file -e "$PREVIOUS_RELEASE^{commit}" 2>/dev/null || {
    echo "PREVIOUS_RELEASE $PREVIOUS_RELEASE is not in this clone's history (shallow? git fetch --unshallow)" >&2
    exit 1; }
  rev=$(git -C "$repo" rev-parse --short=12 "$PREVIOUS_RELEASE")
  image="localhost/sglang-fleet/sglang-operator:$rev"
  archive="$dir/archives/$name-$rev.tar"
  echo "$image" > "$dir/$name.current"
  [ -f "$archive" ] && return
  t0=$(date +%s)
  log "building $image from release $PREVIOUS_RELEASE's sources (about 1 min)"
  src=$(mktemp -d "$dir/tmp/src.XXXXXX")
  git -C "$repo" archive "$PREVIOUS_RELEASE" | tar -x -C "$src"
  bud_and_export "$repo/operator/Dockerfile" "$src" "$image" "$archive"
  rm -rf "$src"
  log "$image ready in $(( $(date +%s) - t0 ))s"
}

# The router image: the pinned `smg` wheel (SMG_VERSION in api/router.py) on our base.
build_smg() {
  local version key ctx
  version=$(sed -n 's/^SMG_VERSION = "\(.*\)"$/\1/p' "$repo/operator/sglang_operator/api/router.py")
  [ -n "$version" ] || { echo "no SMG_VERSION in operator/sglang_operator/api/router.py" >&2; exit 1; }
  key=$( { echo "$BASE_IMAGE smg==$version"; sha256sum < "$here/smg.Dockerfile"; } | sha256sum | cut -c1-12)
  ctx=$(mktemp -d "$dir/tmp/smg.XXXXXX")  # the image needs nothing of the repository
  build_keyed smg "$key" "$here/smg.Dockerfile" "$ctx" "smg $version from PyPI, about 1 min" \
    --build-arg SMG_VERSION="$version"
  rmdir "$ctx"
}

command -v buildah >/dev/null || { echo "buildah is missing (tests/cluster/node-deps.sh installs it)" >&2; exit 1; }
# shellcheck source=versions.env
source "$here/versions.env"
bh rm --all >/dev/null 2>&1 || true   # working containers left by a killed build
build_base
targets=("${@:-operator runtime previous smg}")
for t in ${targets[*]}; do
  case $t in
    previous) build_previous ;;
    smg) build_smg ;;
    operator) build_image sglang-operator operator/Dockerfile operator/sglang_operator "about 1 min, 180 MB" ;;
    runtime) build_image radix-runtime runtime-image/Dockerfile runtime-image/radix_runtime \
      "torch with its CUDA libraries: ~6 GB; ~6 min and a 3 GB download the first time, ~2 min after a code change" ;;
    *) echo "unknown image '$t' (operator, runtime, previous, smg)" >&2; exit 2 ;;
  esac
done
for t in ${targets[*]}; do
  case $t in
    operator) cat "$dir/sglang-operator.current" ;; runtime) cat "$dir/radix-runtime.current" ;;
    previous) cat "$dir/previous-sglang-operator.current" ;; smg) cat "$dir/smg.current" ;;
  esac
done
