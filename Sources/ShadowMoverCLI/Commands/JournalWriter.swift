import ArgumentParser
import Foundation

/// The exec writer `bench freeze` starts: an application that appends and fsyncs a journal record
/// continuously, pauses while frozen, and reports the longest gap between two appends (the write
/// stall its users would see). The same protocol as tools/example-writer.py, without needing Python.
struct DebugJournalWriter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal-writer", abstract: "An exec writer that appends and fsyncs continuously (for bench freeze).",
        shouldDisplay: false)

    @Argument(help: "Directory the writer owns (its component).") var directory: String
    @Option(help: "Write {\"maxStallMs\":…,\"records\":…} here on exit.") var stats: String?

    final class Journal: @unchecked Sendable {  // counters guarded by `hold`
        let hold = NSLock()
        var records = 0
        var maxStall: Duration = .zero
        var stop = false
    }

    func run() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/journal.log"
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ValidationError("cannot open \(path)") }
        let journal = Journal()
        let done = startAppending(to: fd, journal)
        serve(journal)
        journal.hold.withLock { journal.stop = true }
        done.wait()
        close(fd)
        if let stats {
            let text = #"{"maxStallMs": \#(journal.maxStall.milliseconds), "records": \#(journal.records)}"#
            try text.write(toFile: stats, atomically: true, encoding: .utf8)
        }
    }

    /// The application: a thread appending and fsyncing records while it holds `journal.hold` — a
    /// freeze holds it too, so the stall shows. - Returns: signalled when the thread stops.
    private func startAppending(to fd: Int32, _ journal: Journal) -> DispatchSemaphore {
        let done = DispatchSemaphore(value: 0)
        Thread {
            var last = ContinuousClock.now
            while true {
                journal.hold.lock()
                if journal.stop {
                    journal.hold.unlock()
                    break
                }
                journal.records += 1
                let line = "record \(journal.records)\n"
                _ = line.withCString { write(fd, $0, strlen($0)) }
                fsync(fd)
                let now = ContinuousClock.now
                journal.maxStall = max(journal.maxStall, now - last)
                last = now
                journal.hold.unlock()
            }
            done.signal()
        }.start()
        return done
    }

    /// Answers the coordinator's events on stdin until it closes them; freeze takes the journal's lock,
    /// thaw and abort give it back.
    private func serve(_ journal: Journal) {
        var frozen = false
        func answer(_ text: String) {
            FileHandle.standardOutput.write(Data((text + "\n").utf8))  // unbuffered: one answer per request
        }
        while let line = readLine() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let event = object["event"] as? String
            else {
                answer(#"{"ok": false, "failure": "nonRetryable", "message": "request is not JSON"}"#)
                continue
            }
            switch event {
            case "identify":
                answer(
                    #"{"ok": true, "metadata": {"name": "Journal Writer", "classId": "3f1c2a9e-0b7d-4c55-8e21-6a9d4b3c2e10", "instanceName": "\#(directory)", "components": [{"logicalPath": "journal", "name": "\#((directory as NSString).lastPathComponent)", "type": "fileGroup", "files": [{"path": "\#(directory)", "filespec": "*", "recursive": true}]}]}}"#
                )
            case "freeze":
                if !frozen {
                    journal.hold.lock()
                    frozen = true
                }
                answer(#"{"ok": true, "info": {"records": "\#(journal.records)"}}"#)
            case "thaw", "abort":
                if frozen {
                    frozen = false
                    journal.hold.unlock()
                }
                answer(#"{"ok": true}"#)
            default:
                answer(#"{"ok": true}"#)
            }
        }
        if frozen { journal.hold.unlock() }
    }
}
