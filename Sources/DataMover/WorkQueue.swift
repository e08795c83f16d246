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

/// Work for the backup workers in two lanes: chunk batches of large files (served first, so a file
/// being read never waits long for its buffers) and whole files from the scanner. Both are bounded.
final class WorkLanes<File, Batch>: @unchecked Sendable {  // state guarded by `condition`
    enum Work {
        case file(File)
        case batch(Batch)
    }

    private let condition = NSCondition()
    private var files: [File] = []
    private var batches: [Batch] = []
    private let fileCapacity: Int
    private let batchCapacity: Int
    private var closed = false

    init(fileCapacity: Int, batchCapacity: Int) {
        self.fileCapacity = fileCapacity
        self.batchCapacity = batchCapacity
    }

    /// Queues a file, waiting while the lane is full.
    func push(file: File) {
        condition.lock()
        while files.count >= fileCapacity && !closed { condition.wait() }
        files.append(file)
        condition.broadcast()
        condition.unlock()
    }

    /// Queues a batch unless the lane is full (then the caller does the work itself).
    func tryPush(batch: Batch) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard batches.count < batchCapacity else { return false }
        batches.append(batch)
        condition.broadcast()
        return true
    }

    /// A batch if one is waiting.
    func tryPopBatch() -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        guard !batches.isEmpty else { return nil }
        condition.broadcast()
        return batches.removeFirst()
    }

    /// Waits up to `timeout` for a batch (used by a worker waiting for its own batches to finish).
    func popBatch(timeout: Duration) -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        if batches.isEmpty { _ = condition.wait(until: Date().addingTimeInterval(timeout.seconds)) }
        guard !batches.isEmpty else { return nil }
        condition.broadcast()
        return batches.removeFirst()
    }

    /// Batches first, then files; nil once closed and empty.
    func pop() -> Work? {
        condition.lock()
        defer { condition.unlock() }
        while batches.isEmpty && files.isEmpty && !closed { condition.wait() }
        if !batches.isEmpty {
            condition.broadcast()
            return .batch(batches.removeFirst())
        }
        guard !files.isEmpty else { return nil }
        condition.broadcast()
        return .file(files.removeFirst())
    }

    func wake() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
