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
///
/// Batches come from workers, not from the scanner: a worker reading a large file adds them until it
/// is done. So the lanes end only when they are closed, empty, and no file handed out is still being
/// read — otherwise the workers left idle when the scanner finishes would leave a last large file to
/// its reader alone.
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
    private var filesInProgress = 0  // handed out by `pop`, not yet `finished`

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

    /// Waits up to `timeout` for a batch (used by a worker waiting for its own batches to finish).
    func popBatch(timeout: Duration) -> Batch? {
        condition.lock()
        defer { condition.unlock() }
        if batches.isEmpty { _ = condition.wait(until: Date().addingTimeInterval(timeout.seconds)) }
        guard !batches.isEmpty else { return nil }
        condition.broadcast()
        return batches.removeFirst()
    }

    /// Batches first, then files; nil once closed, empty, and every file handed out is `finished`.
    /// Whoever takes a file calls `finished` once done with it (also when it failed or was skipped).
    func pop() -> Work? {
        condition.lock()
        defer { condition.unlock() }
        while batches.isEmpty && files.isEmpty && !(closed && filesInProgress == 0) { condition.wait() }
        if !batches.isEmpty {
            condition.broadcast()
            return .batch(batches.removeFirst())
        }
        guard !files.isEmpty else { return nil }
        filesInProgress += 1
        condition.broadcast()
        return .file(files.removeFirst())
    }

    /// A file taken from `pop` is done: it adds no more batches.
    func finished() {
        condition.lock()
        filesInProgress -= 1
        condition.broadcast()
        condition.unlock()
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
