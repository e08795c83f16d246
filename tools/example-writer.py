#!/usr/bin/env python3
"""An example ShadowMover exec writer: copy it and adapt it to your application.

The "application" here is a journal: a thread appends a record to DATA_DIR/journal.log and fsyncs it,
continuously. The writer protocol (docs/WRITERS.md) lets ShadowMover hold the appends during the shadow
copy, so the backup holds a journal whose last record is complete.

  tools/example-writer.py DATA_DIR [--stats FILE] [--interval SECONDS]

ShadowMover starts it with --exec-writer (or from /etc/shadowmover/writers.d) and talks to it on
stdin/stdout, one JSON object per line:

  -> {"event": "identify", "set": "..."}       <- {"ok": true, "metadata": {...Writer Metadata Document...}}
  -> {"event": "prepare-backup", ...}          <- {"ok": true}
  -> {"event": "prepare-snapshot", ...}        <- {"ok": true}
  -> {"event": "freeze", "timeoutMs": 60000}   <- {"ok": true, "info": {"records": "1234"}}
  -> {"event": "thaw"}                         <- {"ok": true}
  -> {"event": "post-snapshot", ...}           <- {"ok": true}
  -> {"event": "backup-complete", ...}         <- {"ok": true}
  -> {"event": "abort"}                        <- {"ok": true}   (undo freeze; may come more than once)
  EOF on stdin: the coordinator is gone -- thaw and exit.

Restore (`shadowmover restore SNAPSHOT --component "Example Journal Writer" --exec-writer ...`):

  -> {"event": "identify", ...}                <- as above (ShadowMover matches the writer by class id)
  -> {"event": "pre-restore", "components": [...], "target": "/"}     <- {"ok": true}  (or a veto: nothing is written)
     ... ShadowMover restores the files, each renamed over the old one ...
  -> {"event": "post-restore", "components": [...], "target": "/", "results": {"journal/journal": true}}  <- {"ok": true}

To refuse an event answer {"ok": false, "failure": "retryable", "message": "why"}; failure is one of
retryable, nonRetryable, timeout, inconsistentSnapshot, outOfResources, notResponding.
Anything the writer prints for people must go to stderr: stdout carries the protocol.
"""
import argparse
import json
import os
import sys
import threading
import time


class Journal:
    """The application: appends and fsyncs records until stopped; `hold` pauses it."""

    def __init__(self, directory, interval):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "journal.log")
        self.interval = interval
        self.hold = threading.Lock()  # held by the writer while frozen
        self.records = 0
        self.max_stall = 0.0  # longest gap between two completed appends, in seconds
        self.stop = False
        self.reopen = False  # set by post-restore: the journal file was replaced
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        last = time.monotonic()
        f = open(self.path, "ab")
        while not self.stop:
            with self.hold:
                if self.reopen:  # the file was replaced by a restore: append to the new one
                    f.close()
                    f = open(self.path, "ab")
                    self.reopen = False
                self.records += 1
                f.write(b"record %d %f\n" % (self.records, time.time()))
                f.flush()
                os.fsync(f.fileno())
            now = time.monotonic()
            self.max_stall = max(self.max_stall, now - last)
            last = now
            if self.interval:
                time.sleep(self.interval)
        f.close()


def metadata(journal):
    return {
        "name": "Example Journal Writer",
        "classId": "0e5bd1d4-4f38-4a35-9c5e-2b8f3f7a1c11",
        "instanceName": os.path.dirname(journal.path),
        "usageType": "userData",
        "sourceType": "nonTransactedDB",
        "restoreMethod": "restoreIfCanReplace",
        "components": [{
            "logicalPath": "journal",
            "name": "journal",
            "type": "fileGroup",
            "selectable": True,
            "files": [{"path": os.path.dirname(journal.path), "filespec": "*.log", "recursive": False}],
        }],
        "excludes": [{"path": os.path.dirname(journal.path), "filespec": "*.tmp", "recursive": False}],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--stats", help="write the longest write stall (ms) and record count here on exit")
    parser.add_argument("--interval", type=float, default=0.0, help="pause between appends, seconds")
    args = parser.parse_args()

    journal = Journal(args.data_dir, args.interval)
    journal.thread.start()
    frozen = False

    def thaw():
        nonlocal frozen
        if frozen:
            journal.hold.release()
            frozen = False

    def answer(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:  # ends at EOF: the coordinator is gone
        try:
            request = json.loads(line)
        except ValueError:
            answer({"ok": False, "failure": "nonRetryable", "message": "request is not JSON"})
            continue
        event = request.get("event")
        if event == "identify":
            answer({"ok": True, "metadata": metadata(journal)})
        elif event == "freeze":
            if not frozen:
                journal.hold.acquire()
                frozen = True
            answer({"ok": True, "info": {"records": str(journal.records)}})
        elif event in ("thaw", "abort"):
            thaw()
            answer({"ok": True})
        elif event == "pre-restore":  # stop appending while the journal is replaced
            if not frozen:
                journal.hold.acquire()
                frozen = True
            answer({"ok": True})
        elif event == "post-restore":  # append to the restored journal from now on
            journal.reopen = True
            thaw()
            answer({"ok": True})
        else:  # prepare-backup, prepare-snapshot, post-snapshot, backup-complete: nothing to do here
            answer({"ok": True})

    thaw()
    journal.stop = True
    journal.thread.join(timeout=5)
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump({"maxStallMs": journal.max_stall * 1000, "records": journal.records}, f)


if __name__ == "__main__":
    main()
