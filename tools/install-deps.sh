#!/usr/bin/env bash
# Installs the Debian packages ShadowMover builds and tests with (skips those already present).
set -euo pipefail
PACKAGES=(pkg-config libzstd-dev liblz4-dev zlib1g-dev libsqlite3-dev attr util-linux btrfs-progs xfsprogs e2fsprogs time
    ceph-mon ceph-mgr ceph-osd radosgw ceph-common curl)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}"
fi
