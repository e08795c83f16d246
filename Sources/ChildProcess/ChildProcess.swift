import CLinux
import Foundation

/// A child process, started with posix_spawn(3) and reaped with waitpid(2).
///
/// Not Foundation's `Process`: on Linux it learns that a child ended when a socket it passes to the
/// child closes, so a child that leaves a daemon behind (pg_ctl starting a server, a hook script
/// starting a service, gpg starting its agent) is never seen to end, and `waitUntilExit()` blocks for
/// ever (swift-corelibs-foundation issue 4795). Here the kernel says when the child ends, and the child
/// gets nothing of ours but the three standard streams it is given: every other descriptor is closed
/// in it, so nothing it leaves running holds a pipe or socket of ours open.
///
/// Every signal is at its default and unblocked in the child (the threads of Dispatch and the Swift
/// runtime block most signals, and a child inherits its starter's mask: a writer must stop on SIGTERM).
public final class ChildProcess: @unchecked Sendable {  // `status` is guarded by `lock`
    /// Where one of the child's standard streams goes.
    public enum Stream: Sendable {
        /// /dev/null.
        case null
        /// This process's own.
        case inherit
        /// This descriptor (a pipe's end, say), duplicated into the child.
        case descriptor(Int32)
    }

    /// The child's process id.
    public let pid: pid_t
    /// The program and its arguments, for messages.
    public let arguments: [String]
    private let lock = NSLock()
    private var status: Int32?

    /// Starts `arguments[0]` (looked up on PATH unless it contains a slash) with `arguments`.
    /// - Parameter environment: the child's environment (default: this process's).
    public init(
        _ arguments: [String], environment: [String: String]? = nil,
        stdin: Stream = .null, stdout: Stream = .inherit, stderr: Stream = .inherit
    ) throws {
        precondition(!arguments.isEmpty, "a child process needs a program")
        self.arguments = arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (fd, stream) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch stream {
            case .null: posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
            case .inherit: break
            case .descriptor(let source): posix_spawn_file_actions_adddup2(&actions, source, fd)
            }
        }
        shadowmover_spawn_closefrom(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let cArguments = arguments.map { strdup($0) } + [nil], cEnvironment = env.map { strdup($0) } + [nil]
        defer { for p in cArguments + cEnvironment { free(p) } }
        var pid = pid_t()
        let rc =
            arguments[0].contains("/")
            ? posix_spawn(&pid, arguments[0], &actions, &attributes, cArguments, cEnvironment)
            : posix_spawnp(&pid, arguments[0], &actions, &attributes, cArguments, cEnvironment)
        guard rc == 0 else { throw ChildProcessError(program: arguments[0], errno: rc) }
        self.pid = pid
    }

    /// The exit status once the child has ended — its exit code, or 128 + the signal that ended it, as
    /// a shell reports it — or nil while it runs.
    public var exitStatus: Int32? {
        reap(blocking: false)
        return lock.withLock { status }
    }

    /// True until the child's exit has been seen.
    public var isRunning: Bool { exitStatus == nil }

    /// Waits for the child to end. - Returns: its exit status.
    @discardableResult
    public func wait() -> Int32 {
        reap(blocking: true)
        return lock.withLock { status } ?? 128 + SIGKILL
    }

    /// Waits for the child to end, at most until `deadline`. - Returns: its exit status, or nil if it
    /// still runs.
    public func wait(until deadline: ContinuousClock.Instant) -> Int32? {
        var pause: useconds_t = 200
        while true {
            if let status = exitStatus { return status }
            if ContinuousClock.now >= deadline { return nil }
            usleep(pause)
            pause = min(pause * 2, 10_000)
        }
    }

    /// Sends `signal` to the child (nothing once it has been reaped: its pid may be another's by then).
    public func send(_ signal: Int32) {
        lock.withLock { if status == nil { _ = kill(pid, signal) } }
    }

    private func reap(blocking: Bool) {
        lock.withLock {
            guard status == nil else { return }
            var raw: Int32 = 0
            var r: pid_t
            repeat { r = waitpid(pid, &raw, blocking ? 0 : WNOHANG) } while r < 0 && errno == EINTR
            if r == pid {
                status = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
            } else if r < 0 {
                status = 128 + SIGKILL  // ECHILD: reaped by someone else; it is gone all the same
            }
        }
    }

    /// A pipe whose two ends are close-on-exec (a child gets one only as a standard stream).
    public static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard shadowmover_pipe_cloexec(&fds) == 0 else { throw ChildProcessError(program: "pipe", errno: errno) }
        return (fds[0], fds[1])
    }

    /// Runs `arguments` to its end and returns its exit status and standard output (at most `limit`
    /// bytes are kept). Its standard error is this process's; its input is /dev/null.
    public static func output(of arguments: [String], environment: [String: String]? = nil, limit: Int = 1 << 20) throws -> (status: Int32, output: [UInt8]) {
        let (readEnd, writeEnd) = try pipe()
        let child: ChildProcess
        do {
            child = try ChildProcess(arguments, environment: environment, stdout: .descriptor(writeEnd))
        } catch {
            close(readEnd)
            close(writeEnd)
            throw error
        }
        close(writeEnd)
        defer { close(readEnd) }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(readEnd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            if output.count < limit { output.append(contentsOf: buffer[..<min(n, limit - output.count)]) }
        }
        return (child.wait(), output)
    }
}

/// A program that could not be started.
public struct ChildProcessError: Error, CustomStringConvertible {
    /// The program that could not start.
    public var program: String
    /// Why (posix_spawn's error).
    public var errno: Int32
    /// "cannot start PROGRAM: REASON".
    public var description: String { "cannot start \(program): \(String(cString: strerror(errno)))" }
}
