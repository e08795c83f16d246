import Foundation

/// Runs an existing qemu-guest-agent fsfreeze-hook script as a writer: `script freeze` at freeze,
/// `script thaw` at thaw (and abort), exit status 0 = success. Other events are no-ops.
///
/// A hook script has no channel to notice that the agent died, so at freeze the adapter also starts a
/// guard (`sh`) that waits on a pipe from this process and runs `script thaw` if the pipe closes
/// without the word "done": a killed agent still thaws its applications.
public final class FsfreezeHookWriter: Writer, @unchecked Sendable {  // one event at a time
    public let script: String
    public var label: String { "fsfreeze-hook:\((script as NSString).lastPathComponent)" }
    private var guardProcess: Process?
    private var guardInput: FileHandle?
    private var frozen = false

    public init(script: String) { self.script = script }

    public func identify(_ context: WriterContext) throws -> WriterMetadata {
        // Hook scripts do not describe data: one component without files, always taking part.
        WriterMetadata(
            name: "fsfreeze-hook \((script as NSString).lastPathComponent)", classID: "7c6e9c44-3c55-4c4a-9bb8-5f1d2f6a0c01",
            instanceName: script, usageType: .other, sourceType: .other, restoreMethod: .custom,
            components: [Component(name: (script as NSString).lastPathComponent, type: .fileGroup, selectable: false, files: [])])
    }

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
        let p = Process()
        p.executableURL = URL(fileURLWithPath: script)
        p.arguments = [argument]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        do { try runWithDefaultSignalMask(p) } catch {
            throw WriterError(.nonRetryable, "cannot run fsfreeze hook \(script): \(error.localizedDescription)")
        }
        while p.isRunning {
            if ContinuousClock.now >= deadline {
                Glibc.kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                throw WriterError(.timeout, "fsfreeze hook \(script) \(argument) did not finish in time")
            }
            usleep(1_000)
        }
        guard p.terminationStatus == 0 else {
            throw WriterError(.nonRetryable, "fsfreeze hook \(script) \(argument) failed with status \(p.terminationStatus)")
        }
    }

    private func startGuard() throws {
        stopGuard()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        // Reads one line; anything but "done" (EOF included: the agent died) means thaw now.
        p.arguments = ["-c", "read -r word; [ \"$word\" = done ] || exec \"$0\" thaw >/dev/null 2>&1", script]
        let pipe = Pipe()
        p.standardInput = pipe
        p.standardOutput = FileHandle.nullDevice
        try runWithDefaultSignalMask(p)
        guardProcess = p
        guardInput = pipe.fileHandleForWriting
    }

    private func stopGuard() {
        if let input = guardInput {
            try? input.write(contentsOf: Data("done\n".utf8))
            try? input.close()
        }
        guardInput = nil
        guardProcess?.waitUntilExit()
        guardProcess = nil
    }
}
