#!/usr/bin/env bash
# Measures a store on S3 side by side with what the same endpoint accepts from boto3 for the same
# bytes as large objects, and with a local store (docs/S3.md). Needs a release build, an S3 endpoint
# (tools/ceph-s3.sh start DIR prints one) and python3 with boto3.
#
#   eval "$(tools/ceph-s3.sh start /tmp/ceph | sed 's/^/export /')"
#   tools/bench-s3.sh /opt/swift
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
corpus=${1:?a directory to back up}
bin=$root/.build/release/shadowmover
: "${SHADOWMOVER_S3_ENDPOINT:?set SHADOWMOVER_S3_ENDPOINT and the AWS keys (tools/ceph-s3.sh start prints them)}"
work=$(mktemp -d /tmp/bench-s3.XXXXXX)
trap 'rm -rf "$work"' EXIT
bucket=bench-$(date +%s)
s3=s3:$SHADOWMOVER_S3_ENDPOINT/$bucket/store
export XDG_CACHE_HOME=$work/cache
now() { date +%s.%N; }
seconds() { python3 -c "print(f'{$2 - $1:.2f}')"; }

"$bin" init --store "$s3" >/dev/null
"$bin" init --store "$work/local" >/dev/null
t0=$(now); "$bin" backup --store "$s3" --json "$corpus" 2>/dev/null | tail -1 >"$work/first.json"; t1=$(now)
stored=$(python3 -c "import json,sys; s=json.load(open('$work/first.json')); print(s.get('summary', s).get('bytesStored', 0) + s.get('summary', s).get('treeBytesStored', 0))")
read_bytes=$(python3 -c "import json; s=json.load(open('$work/first.json')); print(s.get('summary', s)['bytesRead'])")
first=$(seconds "$t0" "$t1")
t0=$(now); "$bin" backup --store "$s3" --force "$corpus" >/dev/null 2>&1; t1=$(now); reread_s3=$(seconds "$t0" "$t1")
"$bin" backup --store "$work/local" "$corpus" >/dev/null 2>&1
t0=$(now); "$bin" backup --store "$work/local" --force "$corpus" >/dev/null 2>&1; t1=$(now); reread_local=$(seconds "$t0" "$t1")
t0=$(now); "$bin" restore latest --store "$s3" --target "$work/restore" >/dev/null; t1=$(now); restore=$(seconds "$t0" "$t1")
rm -rf "$work/restore"

# The same number of bytes as 16 MiB objects through boto3 (multipart, 8 threads), then read back.
python3 - "$stored" "$bucket" <<'PY' >"$work/boto.txt"
import os, sys, time, io, boto3
from boto3.s3.transfer import TransferConfig
total, bucket = int(sys.argv[1]), sys.argv[2]
s3 = boto3.client("s3", endpoint_url=os.environ["SHADOWMOVER_S3_ENDPOINT"])
config = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=8)
blob = os.urandom(16 << 20)
count = max(1, total // len(blob))
from concurrent.futures import ThreadPoolExecutor
t0 = time.time()
with ThreadPoolExecutor(4) as pool:
    list(pool.map(lambda i: s3.upload_fileobj(io.BytesIO(blob), bucket, f"boto/{i}", Config=config), range(count)))
put = time.time() - t0
t0 = time.time()
with ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda i: s3.get_object(Bucket=bucket, Key=f"boto/{i}")["Body"].read(), range(count)))
get = time.time() - t0
print(count * len(blob), f"{put:.2f}", f"{get:.2f}")
PY
read -r boto_bytes boto_put boto_get <"$work/boto.txt"
python3 - "$read_bytes" "$stored" "$first" "$reread_s3" "$reread_local" "$restore" "$boto_bytes" "$boto_put" "$boto_get" <<'PY'
import sys
read, stored, first, reread_s3, reread_local, restore, boto_bytes, put, get = map(float, sys.argv[1:])
mb = lambda b, s: b / s / 1e6
print(f"corpus {read/1e9:.2f} GB, {stored/1e9:.2f} GB stored")
print(f"first backup into S3     {first:7.2f} s  {mb(read, first):7.0f} MB/s of data  {mb(stored, first):6.0f} MB/s uploaded")
print(f"boto3 PUT, same bytes    {put:7.2f} s  {mb(boto_bytes, put):7.0f} MB/s   -> first backup at {put * stored / boto_bytes / first:.2f}x boto3's upload time")
print(f"restore from S3          {restore:7.2f} s  {mb(read, restore):7.0f} MB/s of data  {mb(stored, restore):6.0f} MB/s downloaded")
print(f"boto3 GET, same bytes    {get:7.2f} s  {mb(boto_bytes, get):7.0f} MB/s   -> restore at {get * stored / boto_bytes / restore:.2f}x boto3's download time")
print(f"forced re-read: S3 store {reread_s3:.2f} s, local store {reread_local:.2f} s  ({reread_local / reread_s3:.2f}x)")
PY
