#!/usr/bin/env bash
# A single-node Ceph cluster with an S3 endpoint (RADOS Gateway), from Debian's packages, for tests
# and for trying ShadowMover's S3 store: one monitor, one manager, one BlueStore OSD on a sparse file,
# and radosgw (beast frontend) on 127.0.0.1. No cephadm, containers or systemd; everything lives in DIR.
#
#   tools/ceph-s3.sh start DIR [PORT]   # prints SHADOWMOVER_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
#   tools/ceph-s3.sh stop DIR           # stops the daemons and removes DIR
#   tools/ceph-s3.sh stop-rgw DIR | start-rgw DIR   # the gateway alone (fault tests)
#
# Needs root or a user who may write DIR; packages: ceph-mon ceph-mgr ceph-osd radosgw ceph-common.
set -euo pipefail
command=${1:-}
dir=${2:-}
port=${3:-7480}
[ -n "$command" ] && [ -n "$dir" ] || { sed -n '2,9p' "$0" >&2; exit 1; }
conf=$dir/ceph.conf
ceph() { command ceph -c "$conf" "$@"; }

start_rgw() {
    # Daemons get no stdio of ours: a caller reading our output to its end would wait for them forever.
    radosgw -c "$conf" -n client.rgw.a --rgw-frontends "beast endpoint=127.0.0.1:$(cat "$dir/port") tcp_nodelay=1" </dev/null >>"$dir/log/daemons.out" 2>&1
    # Ready when it answers HTTP (an anonymous request is refused with 4xx, which is fine).
    for _ in $(seq 1 300); do
        if curl -s -o /dev/null "http://127.0.0.1:$(cat "$dir/port")/"; then return 0; fi
        sleep 0.1
    done
    echo "radosgw did not start: see $dir/log/client.rgw.a.log" >&2
    return 1
}

stop_rgw() {
    pkill -f -- "radosgw -c $conf" 2>/dev/null || true
    for _ in $(seq 1 100); do pgrep -f -- "radosgw -c $conf" >/dev/null || return 0; sleep 0.1; done
    pkill -9 -f -- "radosgw -c $conf" 2>/dev/null || true
}

case "$command" in
start)
    if [ -f "$dir/env" ] && pgrep -f -- "radosgw -c $conf" >/dev/null; then cat "$dir/env"; exit 0; fi
    mkdir -p "$dir"/{run,log,mon/a,osd/0,mgr/a}
    dir=$(cd "$dir" && pwd)
    conf=$dir/ceph.conf
    echo "$port" >"$dir/port"
    fsid=$(cat /proc/sys/kernel/random/uuid)
    # cephx keys for every daemon, all in one keyring the monitor imports at mkfs. S3 requests are
    # signed with the keys of the user made below, as on any RGW.
    cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$((port + 10)),v1:127.0.0.1:$((port + 11))
mon initial members = a
auth allow insecure global id reclaim = false
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
mon data = $dir/mon/\$id
mgr data = $dir/mgr/\$id
osd data = $dir/osd/\$id
keyring = $dir/keyring
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
paxos propose interval = 0.01
mon osd auto mark in = true
osd objectstore = bluestore
bluestore block path = $dir/osd/\$id/block.img
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mkfs = false
osd memory target = 1073741824
bluestore cache autotune = false
bluestore cache size = 268435456
ms bind ipv6 = false

[client.rgw.a]
rgw data = $dir/rgw
rgw dns name = localhost
rgw thread pool size = 64
EOF
    k=$dir/keyring
    ceph-authtool --create-keyring "$k" --gen-key -n mon. --cap mon "allow *" >/dev/null
    ceph-authtool "$k" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
    ceph-authtool "$k" --gen-key -n mgr.a --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
    ceph-authtool "$k" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
    ceph-authtool "$k" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$((port + 10)),v1:127.0.0.1:$((port + 11))]" "$dir/monmap" >/dev/null
    ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" --keyring "$k" >/dev/null
    ceph-mon -c "$conf" -i a </dev/null >>"$dir/log/daemons.out" 2>&1
    ceph-mgr -c "$conf" -i a </dev/null >>"$dir/log/daemons.out" 2>&1
    uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(ceph osd new "$uuid" 0)
    ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid" >/dev/null 2>&1
    ceph-osd -c "$conf" -i "$id" </dev/null >>"$dir/log/daemons.out" 2>&1
    for _ in $(seq 1 300); do
        if ceph osd stat 2>/dev/null | grep -q "1 up"; then break; fi
        sleep 0.1
    done
    mkdir -p "$dir/rgw"
    start_rgw
    radosgw-admin -c "$conf" user create --uid shadowmover --display-name ShadowMover \
        --access-key shadowmover-test --secret-key shadowmover-test-secret >/dev/null
    cat >"$dir/env" <<EOF
SHADOWMOVER_S3_ENDPOINT=http://127.0.0.1:$port
AWS_ACCESS_KEY_ID=shadowmover-test
AWS_SECRET_ACCESS_KEY=shadowmover-test-secret
AWS_DEFAULT_REGION=us-east-1
EOF
    cat "$dir/env"
    ;;
stop)
    [ -f "$conf" ] || exit 0
    stop_rgw
    for d in ceph-osd ceph-mgr ceph-mon; do pkill -f -- "$d -c $conf" 2>/dev/null || true; done
    for _ in $(seq 1 100); do pgrep -f -- "-c $conf" >/dev/null || break; sleep 0.1; done
    pkill -9 -f -- "-c $conf" 2>/dev/null || true
    rm -rf "$dir"
    ;;
stop-rgw) stop_rgw ;;
start-rgw) start_rgw ;;
*) sed -n '2,9p' "$0" >&2; exit 1 ;;
esac
