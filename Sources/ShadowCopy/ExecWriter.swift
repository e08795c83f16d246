import ChildProcess
import Foundation
import JSONFormat

/// A writer that is a separate program, speaking newline-delimited JSON over stdin/stdout
/// (docs/WRITERS.md). It is started once per session; closing its stdin (EOF) tells it the coordinator
/// is gone, so it must thaw and exit — which is what keeps a killed agent from leaving it frozen.
public final class ExecWriter: Writer, @unchecked Sendable {  // one event at a time (coordinator's rule)
    /// The writer program.
    public let executable: String
    /// Its arguments.
    public let arguments: [String]
    /// "exec:PROGRAM".
    public var label: String { "exec:\((executable as NSString).lastPathComponent)" }
    private var process: ChildProcess?
    /// The write end of the writer's stdin, and the read end of its stdout (-1 when not running).
    private var inputFD: Int32 = -1
    private var outputFD: Int32 = -1
    private var pending = [UInt8]()
    private let lock = NSLock()

    /// A writer run as `executable arguments`, started at identify.
    public init(executable: String, arguments: [String] = []) {
        self.executable = executable
        self.arguments = arguments
    }

    deinit { shutdown() }

    /// Sends identify and reads the Writer Metadata Document it answers.
    public func identify(_ context: WriterContext) throws -> WriterMetadata {
        let answer = try request(["event": "identify", "set": context.setID], deadline: context.deadline)
        guard let metadata = answer["metadata"] else {
            throw WriterError(.nonRetryable, "\(label) answered identify without \"metadata\"")
        }
        do {
            let data = try JSONSerialization.data(withJSONObject: metadata)
            return try JSONFormat.decoder().decode(WriterMetadata.self, from: data)
        } catch {
            throw WriterError(.nonRetryable, "\(label) sent a Writer Metadata Document that does not parse: \(error)")
        }
    }

    /// Sends `event` as a JSON line and waits for its answer within the context's deadline.
    public func handle(_ event: WriterEvent, _ context: WriterContext) throws -> [String: String] {
        var message: [String: Any] = ["event": event.rawValue, "set": context.setID]
        switch event {
        case .prepareBackup: message["components"] = context.selectedComponents
        case .prepareSnapshot: message["volumes"] = context.volumes
        case .freeze:
            message["timeoutMs"] = Int((context.deadline - .now).milliseconds)
        case .postSnapshot: message["snapshots"] = context.shadowCopies
        case .backupComplete: message["results"] = context.results
        case .preRestore:
            message["components"] = context.selectedComponents
            message["target"] = context.restoreTarget ?? "/"
        case .postRestore:
            message["components"] = context.selectedComponents
            message["target"] = context.restoreTarget ?? "/"
            message["results"] = context.results
        default: break
        }
        let answer = try request(message, deadline: context.deadline)
        var info: [String: String] = [:]
        if let extra = answer["info"] as? [String: Any] {
            for (k, v) in extra { info[k] = "\(v)" }
        }
        return info
    }

    /// Ends the writer at the end of a session: EOF (thaw and exit), SIGKILL if it is still there
    /// after half a second.
    public func shutdown() {
        lock.withLock { end(afterEOF: .milliseconds(500), afterTerm: nil) }
    }

    /// How long a writer that failed has to exit after EOF on its stdin, and then after SIGTERM, before
    /// it is killed (docs/WRITERS.md, "When a writer does not answer").
    static let eofGrace: Duration = .seconds(1)
    static let termGrace: Duration = .seconds(1)
    /// Set once the writer was ended after a failure: it is not started again in this session.
    private var stopped = false

    /// True once `terminate` ended the writer.
    var isStopped: Bool { lock.withLock { stopped } }

    /// False once the writer's process has ended (by itself, or ended by us); true before it starts.
    public var isAlive: Bool { lock.withLock { !stopped && process?.isRunning != false } }

    /// Ends a writer that timed out or stopped answering, the way qemu-ga's fsfreeze guard does: EOF on
    /// its stdin first (the protocol's "thaw and exit"), SIGTERM after `eofGrace` (a writer should thaw
    /// on it too), SIGKILL after `termGrace`. It is never started again in this session: an `abort`
    /// sent to a fresh copy would reach a process that knows nothing of the freeze, while the one that
    /// holds the application keeps holding it.
    func terminate() {
        lock.withLock {
            stopped = true
            end(afterEOF: Self.eofGrace, afterTerm: Self.termGrace)
        }
    }

    /// Closes the writer's stdin, waits up to `afterEOF` for it to exit, then (with `afterTerm`) sends
    /// SIGTERM and waits that long, then SIGKILLs it; reaps it. Called with `lock` held.
    private func end(afterEOF: Duration, afterTerm: Duration?) {
        guard let process else { return }
        if inputFD >= 0 { close(inputFD) }
        inputFD = -1
        if process.wait(until: .now + afterEOF) == nil {
            if let afterTerm {
                process.send(SIGTERM)
                if process.wait(until: .now + afterTerm) == nil { process.send(SIGKILL) }
            } else {
                process.send(SIGKILL)
            }
        }
        process.wait()
        if outputFD >= 0 { close(outputFD) }
        outputFD = -1
        self.process = nil
    }

    private func start() throws {
        guard !stopped else {
            throw WriterError(.notResponding, "\(label) was ended after it failed to answer; it is not started again in this session")
        }
        guard process == nil else { return }
        signal(SIGPIPE, SIG_IGN)  // a writer that dies must not take us with it (a restore has no coordinator)
        let stdin = try ChildProcess.pipe(), stdout = try ChildProcess.pipe()
        defer {
            close(stdin.read)
            close(stdout.write)
        }
        do {
            process = try ChildProcess([executable] + arguments, stdin: .descriptor(stdin.read), stdout: .descriptor(stdout.write))
        } catch {
            close(stdin.write)
            close(stdout.read)
            throw WriterError(.nonRetryable, "cannot start writer \(executable): \(error) — check that it exists and is executable")
        }
        inputFD = stdin.write
        outputFD = stdout.read
    }

    private func request(_ message: [String: Any], deadline: ContinuousClock.Instant) throws -> [String: Any] {
        lock.lock()
        defer { lock.unlock() }
        try start()
        var line = try JSONSerialization.data(withJSONObject: message, options: [.sortedKeys])
        line.append(0x0A)
        let written = line.withUnsafeBytes { b -> Bool in
            let fd = inputFD
            guard fd >= 0 else { return false }
            var done = 0
            while done < b.count {
                let n = write(fd, b.baseAddress! + done, b.count - done)
                if n < 0 { if errno == EINTR { continue }; return false }
                done += n
            }
            return true
        }
        guard written else { throw WriterError(.notResponding, "\(label) is not running (its stdin is closed)") }
        let event = message["event"] as? String ?? "?"
        return try Self.parseReply(try readLine(deadline: deadline, event: event), from: label, to: event)
    }

    /// Reads one line a writer answered: `{"ok": true, …}`, or `{"ok": false, "failure": …, "message": …}`
    /// as a veto. Anything else is a non-retryable failure quoting the start of the line.
    static func parseReply(_ answer: [UInt8], from label: String, to event: String) throws -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer)) as? [String: Any], let ok = object["ok"] as? Bool else {
            let text = String(decoding: answer.prefix(200), as: UTF8.self)
            throw WriterError(.nonRetryable, "\(label) answered \(event) with something that is not {\"ok\": …}: \(text.debugDescription)")
        }
        if !ok {
            let failure = (object["failure"] as? String).flatMap(WriterFailure.init(rawValue:)) ?? .nonRetryable
            let text = object["message"] as? String ?? "no message"
            throw WriterError(failure, "\(label) vetoed \(event): \(text)")
        }
        return object
    }

    private func readLine(deadline: ContinuousClock.Instant, event: String) throws -> [UInt8] {
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<newline])
                pending.removeFirst(newline + 1)
                return line
            }
            let remaining = deadline - .now
            if remaining <= .zero { throw WriterError(.timeout, "\(label) did not answer \(event) in time") }
            var pfd = pollfd(fd: outputFD, events: Int16(POLLIN), revents: 0)
            let ms = Int32(min(Int64(remaining.components.seconds) * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1, 60_000))
            let rc = poll(&pfd, 1, ms)
            if rc < 0 && errno != EINTR { throw WriterError(.notResponding, "\(label): poll failed") }
            if rc <= 0 { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = read(outputFD, &buffer, buffer.count)
            if n == 0 { throw WriterError(.notResponding, "\(label) exited during \(event)") }
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; throw WriterError(.notResponding, "\(label): read failed") }
            pending.append(contentsOf: buffer[..<n])
            if pending.count > 1 << 20 { throw WriterError(.nonRetryable, "\(label) sent more than 1 MiB without a newline") }
        }
    }
}
