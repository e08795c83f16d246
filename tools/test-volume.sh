#!/usr/bin/env bash
# Creates and removes loop-mounted test volumes (needs root; no device-mapper required).
#
#   tools/test-volume.sh create btrfs|xfs|ext4 MOUNTPOINT [SIZE_MB]   # default 512 MB; XFS gets reflink=1
#   tools/test-volume.sh remove MOUNTPOINT
#
# The image lives next to the mount point as MOUNTPOINT.img and is deleted by `remove`.
# TEST_VOLUME_DIRECT_IO=1: the loop device reads and writes its image with O_DIRECT, as a disk would,
# rather than through the page cache a second time (benchmarks).
set -euo pipefail
command=${1:-}
case "$command" in
create)
    fs=${2:?filesystem: btrfs or xfs}; mnt=${3:?mount point}; size=${4:-512}
    img="$mnt.img"
    mkdir -p "$mnt"
    truncate -s "${size}M" "$img"
    dev=$(losetup --find --show ${TEST_VOLUME_DIRECT_IO:+--direct-io=on} "$img")
    case "$fs" in
    btrfs) mkfs.btrfs -q -f "$dev" ;;
    xfs) mkfs.xfs -q -f -m reflink=1 "$dev" ;;
    ext4) mkfs.ext4 -q -F "$dev" ;;
    *) losetup -d "$dev"; rm -f "$img"; echo "unknown filesystem $fs: use btrfs, xfs or ext4" >&2; exit 1 ;;
    esac
    mount "$dev" "$mnt"
    echo "$dev"
    ;;
remove)
    mnt=${2:?mount point}
    dev=$(findmnt -n -o SOURCE --target "$mnt" 2>/dev/null || true)
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    if [ -n "$dev" ] && [[ "$dev" == /dev/loop* ]]; then losetup -d "$dev" 2>/dev/null || true; fi
    rm -f "$mnt.img"
    rmdir "$mnt" 2>/dev/null || true
    ;;
*)
    sed -n '2,7p' "$0" >&2
    exit 1
    ;;
esac
