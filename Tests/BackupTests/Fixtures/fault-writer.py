#!/usr/bin/env python3
"""A writer for fault tests: logs every event it receives, and misbehaves on request.

  fault-writer.py LOG [--name N] [--files DIR] [--hang EVENT] [--crash EVENT] [--garbage EVENT]
                  [--veto EVENT --failure KIND [--times N]]

On EOF it logs "eof" (and "thawed-on-eof" if it was frozen), then exits.
"""
import argparse
import json
import os
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("log")
p.add_argument("--name", default="fault")
p.add_argument("--files")
p.add_argument("--hang")
p.add_argument("--sleep", help="EVENT:SECONDS, sleep before answering EVENT")
p.add_argument("--crash")
p.add_argument("--garbage")
p.add_argument("--veto")
p.add_argument("--failure", default="nonRetryable")
p.add_argument("--times", type=int, default=1000000)
p.add_argument("--counter", help="file counting vetoes across processes")
a = p.parse_args()


def log(text):
    with open(a.log, "a") as f:
        f.write(text + "\n")


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


frozen = False
for line in sys.stdin:
    event = json.loads(line)["event"]
    log(event)
    if event == a.crash:
        os._exit(7)
    if event == a.hang:
        time.sleep(3600)
    if a.sleep and event == a.sleep.split(":")[0]:
        time.sleep(float(a.sleep.split(":")[1]))
    if event == a.garbage:
        sys.stdout.write("this is not json\n")
        sys.stdout.flush()
        continue
    if event == a.veto:
        done = 0
        if a.counter and os.path.exists(a.counter):
            done = int(open(a.counter).read() or 0)
        if done < a.times:
            if a.counter:
                open(a.counter, "w").write(str(done + 1))
            answer({"ok": False, "failure": a.failure, "message": "vetoed by request"})
            continue
    if event == "identify":
        files = [{"path": a.files, "filespec": "*", "recursive": True}] if a.files else []
        answer({"ok": True, "metadata": {"name": a.name, "components": [{"name": "data", "type": "fileGroup", "files": files}]}})
        continue
    if event == "freeze":
        frozen = True
    if event in ("thaw", "abort"):
        frozen = False
    answer({"ok": True})
log("eof")
if frozen:
    log("thawed-on-eof")
