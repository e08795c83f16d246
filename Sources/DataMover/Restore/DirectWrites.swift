import Foundation

/// One O_DIRECT write at a time on a thread of its own, so the worker that filled the buffer can fill
/// another meanwhile.
final class DirectWrites: @unchecked Sendable {  // state guarded by `condition`
    struct Write {
        var fd: Int32
        /// The file's ordinary descriptor, for writing the bytes again where O_DIRECT is refused.
        var buffered: Int32
        var bytes: UnsafeRawPointer
        var count: Int
        var offset: off_t
        /// errno of the write, 0 when it succeeded.
        var error: Int32 = 0
    }

    private let condition = NSCondition()
    private var pending: Write?
    private var finished: Write?
    private var running = false
    private var stopping = false

    init() {
        let thread = Thread { [self] in run() }
        thread.name = "restore-writes"
        thread.stackSize = 256 << 10
        thread.start()
    }

    /// Starts writing `count` bytes at `bytes` to `fd` at `offset`. The caller waits for the previous
    /// write first (`wait`), and leaves the bytes alone until it has waited for this one.
    func start(fd: Int32, buffered: Int32, bytes: UnsafeRawPointer, count: Int, offset: off_t) {
        condition.withLock {
            precondition(!running, "DirectWrites: a write is already running")
            pending = Write(fd: fd, buffered: buffered, bytes: bytes, count: count, offset: offset)
            running = true
            condition.broadcast()
        }
    }

    /// Whether a write was started and not yet waited for.
    var isRunning: Bool { condition.withLock { running || finished != nil } }

    /// Waits for the write started last. - Returns: it, with its error; nil if none was started.
    func wait() -> Write? {
        condition.withLock {
            while running { condition.wait() }
            defer { finished = nil }
            return finished
        }
    }

    func stop() {
        condition.withLock {
            while running { condition.wait() }
            stopping = true
            condition.broadcast()
        }
    }

    private func run() {
        while true {
            var write: Write
            condition.lock()
            while pending == nil && !stopping { condition.wait() }
            if stopping {
                condition.unlock()
                return
            }
            write = pending!
            pending = nil
            condition.unlock()
            write.error = ContentWriter.writeFully(write.fd, write.bytes, count: write.count, at: write.offset)
            condition.withLock {
                finished = write
                running = false
                condition.broadcast()
            }
        }
    }
}
