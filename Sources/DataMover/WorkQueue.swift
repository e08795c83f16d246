import Foundation

/// A bounded, blocking multi-producer multi-consumer queue: producers wait when it is full, so memory
/// stays flat however much input there is.
final class BoundedQueue<Element>: @unchecked Sendable {  // state guarded by `condition`
    private let condition = NSCondition()
    private var items: [Element] = []
    private var head = 0
    private let capacity: Int
    private var closed = false

    init(capacity: Int) { self.capacity = max(1, capacity) }

    func push(_ item: Element) {
        condition.lock()
        while items.count - head >= capacity && !closed { condition.wait() }
        if !closed { items.append(item) }
        condition.broadcast()
        condition.unlock()
    }

    /// The next item, or nil once the queue is closed and drained.
    func pop() -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while head == items.count && !closed { condition.wait() }
        guard head < items.count else { return nil }
        let item = items[head]
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        condition.broadcast()
        return item
    }

    /// No more items will be pushed; consumers finish what is queued.
    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}

/// A fixed set of threads running `body` until it returns. Blocking I/O belongs on threads of its own,
/// not on Swift concurrency's cooperative pool.
final class WorkerThreads: @unchecked Sendable {
    private var threads: [Thread] = []
    private let group = DispatchGroup()

    init(count: Int, name: String, body: @escaping @Sendable (Int) -> Void) {
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

    func join() { group.wait() }
}
