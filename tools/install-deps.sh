#!/usr/bin/env bash
# Installs the Debian packages ShadowMover builds and tests with (skips those already present).
set -euo pipefail
#
#   tools/install-deps.sh          # what building and running ShadowMover needs
#   tools/install-deps.sh --test   # and what the tests need besides: a single-node Ceph for the S3 tests,
#                                  # PostgreSQL 15 (server, pgbench, pg_amcheck) and the sqlite3 shell
PACKAGES=(pkg-config libzstd-dev liblz4-dev zlib1g-dev libsqlite3-dev libpq-dev libfuse3-dev attr util-linux btrfs-progs xfsprogs e2fsprogs time)
if [ "${1:-}" = "--test" ]; then
    PACKAGES+=(ceph-mon ceph-mgr ceph-osd radosgw ceph-common curl procps postgresql-15 postgresql-contrib sqlite3 unzip)
fi
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
