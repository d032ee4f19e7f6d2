#!/usr/bin/env bash
# Debian packages the node test bed and `make images` need: containerd, runc and the CNI plugins
# for the real node, iptables for kube-proxy (nftables so the janitor can remove the tables it
# creates), buildah and debootstrap to build our images without a daemon or a registry.
# Installs only what is missing (root, as in CI); quiet when all are there.
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in containerd runc containernetworking-plugins iptables nftables buildah debootstrap; do
  have "$pkg" || need+=("$pkg")
done
[ ${#need[@]} = 0 ] && exit 0
[ "$(id -u)" = 0 ] || { echo "node-deps: need root to apt-get install ${need[*]}" >&2; exit 1; }
echo "[node-deps] apt-get install ${need[*]} (about 40 MB, under a minute)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
