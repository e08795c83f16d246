#!/usr/bin/python3
"""A writer for fault tests: logs every event it receives, and misbehaves on request.

  fault-writer.py LOG [--name N] [--files DIR] [--hang EVENT] [--crash EVENT] [--exit-after EVENT] [--remove EVENT:PATH] [--garbage EVENT]
                  [--veto EVENT --failure KIND [--times N]] [--app PID]

On EOF it logs "eof" (and "thawed-on-eof" if it was frozen), then exits.

With --app it holds a real application the way a database writer would: SIGSTOP at freeze, SIGCONT at
thaw, abort, EOF and SIGTERM. With --guard too, so that even its own crash cannot leave the application
stopped, a guard process resumes it when this writer dies (the pipe between them closes). With --app,
each writer process logs "start" first, so a test can count the processes a session started.
"""
import argparse
import json
import os
import signal
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("log")
p.add_argument("--name", default="fault")
p.add_argument("--files")
p.add_argument("--hang")
p.add_argument("--sleep", help="EVENT:SECONDS, sleep before answering EVENT")
p.add_argument("--crash")
p.add_argument("--remove", help="EVENT:PATH, remove PATH before answering EVENT (an application deleting a file)")
p.add_argument("--exit-after", help="answer EVENT, then exit (a writer killed right after it)")
p.add_argument("--garbage")
p.add_argument("--veto")
p.add_argument("--failure", default="nonRetryable")
p.add_argument("--times", type=int, default=1000000)
p.add_argument("--counter", help="file counting vetoes across processes")
p.add_argument("--app", type=int, help="pid of an application to suspend while frozen")
p.add_argument("--guard", action="store_true", help="resume the application when this writer dies")
a = p.parse_args()


def resume_app():
    if a.app:
        try:
            os.kill(a.app, signal.SIGCONT)
        except ProcessLookupError:
            pass


def suspend_app():
    if not a.app:
        return
    if a.guard:
        start_guard()
    os.kill(a.app, signal.SIGSTOP)


def start_guard():
    r, w = os.pipe()
    if os.fork() == 0:  # the guard: wakes when the writer's end of the pipe closes, however it ends
        os.close(w)
        os.close(0)  # the coordinator's pipes are the writer's alone: its exit must read as EOF there
        os.close(1)
        os.read(r, 1)
        resume_app()
        os._exit(0)
    os.close(r)
    start_guard.pipe = w  # held open for the writer's life


def on_term(signum, frame):
    log("sigterm")
    resume_app()
    os._exit(0)


signal.signal(signal.SIGTERM, on_term)


def log(text):
    with open(a.log, "a") as f:
        f.write(text + "\n")


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if a.app:
    log("start")
frozen = False
for line in sys.stdin:
    event = json.loads(line)["event"]
    log(event)
    if event == "freeze":
        suspend_app()
    if event in ("thaw", "abort"):
        resume_app()
    if event == a.crash:
        os._exit(7)
    if event == a.hang:
        time.sleep(3600)
    if a.remove and event == a.remove.split(":", 1)[0]:
        os.unlink(a.remove.split(":", 1)[1])
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
    if event == a.exit_after:
        os._exit(0)
log("eof")
resume_app()
if frozen:
    log("thawed-on-eof")
