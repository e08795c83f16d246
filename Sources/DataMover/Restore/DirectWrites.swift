import Foundation

/// A part's writes, one batch at a time, on a thread of its own, so the worker that filled the buffer
/// can fill another meanwhile: the whole pages with O_DIRECT, and the unaligned ends of a part through
/// the page cache after them. The ends go here too because a write through the page cache takes the
/// file's inode lock exclusively and would wait, on the worker's core, for the O_DIRECT write still
/// running on the same file.
final class DirectWrites: @unchecked Sendable {  // state guarded by `condition`
    /// Bytes to write at a file offset.
    struct Piece {
        var bytes: UnsafeRawPointer
        var count: Int
        var offset: off_t
    }

    struct Write {
        /// The O_DIRECT descriptor, and the file's ordinary one.
        var fd: Int32
        var buffered: Int32
        /// Whole pages, written with O_DIRECT (through `buffered` where the filesystem refuses it).
        var direct: Piece?
        /// Written through the page cache, after `direct`.
        var ends: [Piece]
        /// errno of the first write that failed, 0 when all succeeded.
        var error: Int32 = 0
        /// The filesystem refused O_DIRECT (EINVAL): `direct` went through the page cache.
        var refused = false
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

    /// Starts `write`. The caller waits for the previous one first (`wait`), and leaves its bytes alone
    /// until it has waited for this one.
    func start(_ write: Write) {
        condition.withLock {
            precondition(!running, "DirectWrites: a write is already running")
            pending = write
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

    private static func perform(_ write: inout Write) {
        if let pages = write.direct {
            write.error = ContentWriter.writeFully(write.fd, pages.bytes, count: pages.count, at: pages.offset)
            if write.error == EINVAL {
                write.refused = true
                write.error = ContentWriter.writeFully(write.buffered, pages.bytes, count: pages.count, at: pages.offset)
            }
        }
        for end in write.ends where write.error == 0 {
            write.error = ContentWriter.writeFully(write.buffered, end.bytes, count: end.count, at: end.offset)
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
            Self.perform(&write)
            condition.withLock {
                finished = write
                running = false
                condition.broadcast()
            }
        }
    }
}
