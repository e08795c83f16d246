#!/usr/bin/env bash
# Measures a store on S3 side by side with what the same endpoint accepts from boto3 as large objects,
# and with a local store (docs/S3.md). Needs a release build, an S3 endpoint (tools/ceph-s3.sh start
# DIR prints one) and python3 with boto3.
#
#   eval "$(tools/ceph-s3.sh start /tmp/ceph | sed 's/^/export /')"
#   tools/bench-s3.sh /opt/swift/usr/bin [ROUNDS]
#
# Each round, alternating: ShadowMover's first backup into a new bucket, a forced re-read and a restore
# from it; the same into a local store; then boto3 (multipart, 8 MiB parts, 4 objects at a time)
# putting and getting the corpus's own bytes as 16 MiB objects — what `aws s3 cp` of the data costs —
# and as many bytes as the store holds. Medians of the rounds. Beside each time, the CPU seconds the
# client and the Ceph daemons (mon, mgr, osd, radosgw: read from /proc) spent, and how many cores
# that kept busy: when Ceph runs on the machine that backs up, the two share its cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
corpus=${1:?a directory to back up}
rounds=${2:-3}
: "${SHADOWMOVER_S3_ENDPOINT:?set SHADOWMOVER_S3_ENDPOINT and the AWS keys (tools/ceph-s3.sh start prints them)}"
work=$(mktemp -d /tmp/bench-s3.XXXXXX)
trap 'rm -rf "$work"' EXIT
export SHADOWMOVER_BENCH_BIN=$root/.build/release/shadowmover XDG_CACHE_HOME=$work/cache
# Encrypted stores, as users make them (the password's scrypt is part of every command's time).
export SHADOWMOVER_PASSWORD=${SHADOWMOVER_PASSWORD:-bench-s3}
exec python3 - "$corpus" "$rounds" "$work" <<'PY'
import io, json, os, resource, statistics, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3
from boto3.s3.transfer import TransferConfig

corpus, rounds, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
binary, endpoint = os.environ["SHADOWMOVER_BENCH_BIN"], os.environ["SHADOWMOVER_S3_ENDPOINT"]
s3 = boto3.client("s3", endpoint_url=endpoint)
transfer = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=8)
tick = os.sysconf("SC_CLK_TCK")

def ceph_cpu():
    """CPU seconds the Ceph daemons have used so far."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
            if os.path.basename(cmd) in (b"ceph-mon", b"ceph-mgr", b"ceph-osd", b"radosgw"):
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick

def timed(label, results, work_fn):
    """Runs work_fn, records (wall, client CPU, Ceph CPU) under label; returns work_fn's value."""
    c0, s0, w0 = ceph_cpu(), resource.getrusage(resource.RUSAGE_SELF), time.time()
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    value = work_fn()
    wall = time.time() - w0
    s1, k1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (s1.ru_utime + s1.ru_stime - s0.ru_utime - s0.ru_stime) + (k1.ru_utime + k1.ru_stime - k0.ru_utime - k0.ru_stime)
    results.setdefault(label, []).append((wall, client, ceph_cpu() - c0))
    return value

def shadowmover(*args):
    out = subprocess.run([binary, *args], check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    return out

def corpus_objects(size=16 << 20):
    """The corpus's files, concatenated in walk order and cut into 16 MiB objects (as tar | split would)."""
    buffer = bytearray()
    for directory, dirs, files in os.walk(corpus):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    buffer += f.read()
            while len(buffer) >= size:
                yield bytes(buffer[:size])
                del buffer[:size]
    if buffer:
        yield bytes(buffer)

def boto_put(bucket, objects):
    with ThreadPoolExecutor(4) as pool:
        keys = list(pool.map(lambda item: (s3.upload_fileobj(io.BytesIO(item[1]), bucket, f"boto/{item[0]}", Config=transfer), f"boto/{item[0]}")[1], enumerate(objects)))
    return keys

def empty_and_delete(bucket):
    """Removes a round's bucket: the single-node cluster holds 20 GiB, and rounds add up."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=bucket)

def boto_get(bucket, keys):
    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(lambda key: len(s3.get_object(Bucket=bucket, Key=key)["Body"].read()), keys))

results, read_bytes, stored = {}, 0, 0
for r in range(rounds):
    bucket = f"bench-{int(time.time())}-{r}"
    store, local = f"s3:{endpoint}/{bucket}/store", f"{work}/local-{r}"
    shadowmover("init", "--store", store)
    shadowmover("init", "--store", local)
    summary = json.loads(timed("S3 first backup", results, lambda: shadowmover("backup", "--store", store, "--json", corpus)).strip().splitlines()[-1])
    summary = summary.get("summary", summary)
    read_bytes, stored = summary["bytesRead"], summary["bytesStored"] + summary.get("treeBytesStored", 0)
    timed("S3 forced re-read", results, lambda: shadowmover("backup", "--store", store, "--force", corpus))
    timed("S3 restore", results, lambda: shadowmover("restore", "latest", "--store", store, "--target", f"{work}/restore"))
    subprocess.run(["rm", "-rf", f"{work}/restore"], check=True)
    timed("local first backup", results, lambda: shadowmover("backup", "--store", local, corpus))
    timed("local forced re-read", results, lambda: shadowmover("backup", "--store", local, "--force", corpus))
    timed("local restore", results, lambda: shadowmover("restore", "latest", "--store", local, "--target", f"{work}/restore"))
    subprocess.run(["rm", "-rf", f"{work}/restore", local], check=True)
    keys = timed("boto3 PUT corpus", results, lambda: boto_put(bucket, corpus_objects()))
    timed("boto3 GET corpus", results, lambda: boto_get(bucket, keys))
    blob = os.urandom(16 << 20)
    stored_keys = timed("boto3 PUT stored", results, lambda: boto_put(bucket, (blob for _ in range(max(1, stored // len(blob))))))
    timed("boto3 GET stored", results, lambda: boto_get(bucket, stored_keys))
    stored_moved = len(stored_keys) * len(blob)
    empty_and_delete(bucket)

med = {label: tuple(statistics.median(v[i] for v in runs) for i in range(3)) for label, runs in results.items()}
mb = lambda b, s: b / s / 1e6
print(f"corpus {read_bytes / 1e9:.2f} GB, {stored / 1e9:.2f} GB stored; medians of {rounds} rounds (wall s, client CPU s, Ceph CPU s)")
for label, (wall, client, ceph) in med.items():
    moved = {"boto3 PUT stored": stored_moved, "boto3 GET stored": stored_moved}.get(label, read_bytes)
    print(f"  {label:22} {wall:6.2f} s  {mb(moved, wall):6.0f} MB/s   CPU: client {client:5.2f} s, Ceph {ceph:5.2f} s ({(client + ceph) / wall:.1f} cores busy)")
w = lambda label: med[label][0]
print(f"first backup into S3: {w('boto3 PUT corpus') / w('S3 first backup'):.2f}x the speed of boto3 putting the corpus's bytes, "
      f"{w('boto3 PUT stored') * stored / stored_moved / w('S3 first backup'):.2f}x the speed of putting the bytes it stores")
print(f"restore from S3:      {w('boto3 GET corpus') / w('S3 restore'):.2f}x the speed of boto3 getting the corpus's bytes, "
      f"{w('boto3 GET stored') * stored / stored_moved / w('S3 restore'):.2f}x the speed of getting the bytes it stores")
print(f"forced re-read:       S3 store at {w('local forced re-read') / w('S3 forced re-read'):.2f}x the local store's speed")
PY
