import ChildProcess
import Foundation

/// Runs an existing qemu-guest-agent fsfreeze-hook script as a writer: `script freeze` at freeze,
/// `script thaw` at thaw (and abort), exit status 0 = success. Other events are no-ops.
///
/// A hook script has no channel to notice that the agent died, so at freeze the adapter also starts a
/// guard (`sh`) that waits on a pipe from this process and runs `script thaw` if the pipe closes
/// without the word "done": a killed agent still thaws its applications.
public final class FsfreezeHookWriter: Writer, @unchecked Sendable {  // one event at a time
    /// The hook script (`script freeze` / `script thaw`).
    public let script: String
    /// "fsfreeze-hook:SCRIPT".
    public var label: String { "fsfreeze-hook:\((script as NSString).lastPathComponent)" }
    private var guardProcess: ChildProcess?
    private var guardInput: Int32 = -1
    private var frozen = false

    /// A writer around `script`.
    public init(script: String) { self.script = script }

    /// A writer with no components: hooks quiesce, they do not own files.
    public func identify(_ context: WriterContext) throws -> WriterMetadata {
        // Hook scripts do not describe data: one component without files, always taking part.
        WriterMetadata(
            name: "fsfreeze-hook \((script as NSString).lastPathComponent)", classID: "7c6e9c44-3c55-4c4a-9bb8-5f1d2f6a0c01",
            instanceName: script, usageType: .other, sourceType: .other, restoreMethod: .custom,
            components: [Component(name: (script as NSString).lastPathComponent, type: .fileGroup, selectable: false, files: [])])
    }

    /// Runs `script freeze` at freeze and `script thaw` at thaw (and abort); other events need nothing.
    public func handle(_ event: WriterEvent, _ context: WriterContext) throws -> [String: String] {
        switch event {
        case .freeze:
            try startGuard()
            try run("freeze", deadline: context.deadline)
            frozen = true
        case .thaw:
            try thaw(deadline: context.deadline)
        case .abort:
            if frozen { try thaw(deadline: context.deadline) }
        default: break
        }
        return [:]
    }

    /// Nothing runs between events.
    public func shutdown() {
        if frozen { try? thaw(deadline: .now + .seconds(60)) }
        stopGuard()
    }

    private func thaw(deadline: ContinuousClock.Instant) throws {
        frozen = false
        stopGuard()
        try run("thaw", deadline: deadline)
    }

    private func run(_ argument: String, deadline: ContinuousClock.Instant) throws {
        let hook: ChildProcess
        do { hook = try ChildProcess([script, argument], stdout: .null) } catch {
            throw WriterError(.nonRetryable, "cannot run fsfreeze hook \(script): \(error)")
        }
        guard let status = hook.wait(until: deadline) else {
            hook.send(SIGKILL)
            hook.wait()
            throw WriterError(.timeout, "fsfreeze hook \(script) \(argument) did not finish in time")
        }
        guard status == 0 else {
            throw WriterError(.nonRetryable, "fsfreeze hook \(script) \(argument) failed with status \(status)")
        }
    }

    private func startGuard() throws {
        stopGuard()
        let (readEnd, writeEnd) = try ChildProcess.pipe()
        defer { close(readEnd) }
        do {
            // Reads one line; anything but "done" (EOF included: the agent died) means thaw now.
            guardProcess = try ChildProcess(
                ["/bin/sh", "-c", "read -r word; [ \"$word\" = done ] || exec \"$0\" thaw >/dev/null 2>&1", script],
                stdin: .descriptor(readEnd), stdout: .null)
        } catch {
            close(writeEnd)
            throw WriterError(.nonRetryable, "cannot start the thaw guard of \(script): \(error)")
        }
        guardInput = writeEnd
    }

    private func stopGuard() {
        if guardInput >= 0 {
            _ = "done\n".withCString { write(guardInput, $0, 5) }
            close(guardInput)
        }
        guardInput = -1
        guardProcess?.wait()
        guardProcess = nil
    }
}
