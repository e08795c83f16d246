import Foundation

/// A fixed set of threads running `body` until it returns. Blocking I/O belongs on threads of its own,
/// not on Swift concurrency's cooperative pool.
public final class WorkerThreads: @unchecked Sendable {
    private var threads: [Thread] = []
    private let group = DispatchGroup()

    /// Starts `count` threads named `name-i`, each running `body(i)`.
    public init(count: Int, name: String, body: @escaping @Sendable (Int) -> Void) {
        for i in 0..<count {
            group.enter()
            let t = Thread { [group] in
                body(i)
                group.leave()
            }
            t.name = "\(name)-\(i)"
            t.stackSize = 1 << 20
            threads.append(t)
        }
        for t in threads { t.start() }
    }

    /// Waits until every thread's body has returned.
    public func join() { group.wait() }
}
