import Foundation

/// Test hook for crash safety: with SHADOWMOVER_CRASH_AT=N in the environment, the process kills
/// itself (SIGKILL, as a crash or `kill -9` would) at the N-th durable step of a store operation —
/// each pack, index segment or deletion. Unset, it costs one comparison.
public enum CrashPoint {
    private static let target: Int = Int(ProcessInfo.processInfo.environment["SHADOWMOVER_CRASH_AT"] ?? "") ?? 0
    private static let counter = Counter()

    private final class Counter: @unchecked Sendable {  // guarded by `lock`
        let lock = NSLock()
        var value = 0
        func next() -> Int {
            lock.withLock {
                value += 1; return value
            }
        }
    }

    /// Marks a step; kills the process when it is the chosen one.
    public static func step() {
        guard target > 0 else { return }
        if counter.next() == target { kill(getpid(), SIGKILL) }
    }
}
