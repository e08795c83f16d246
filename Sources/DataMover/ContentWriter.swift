import ChunkStore
import Compression
import Foundation

/// Writes restored file content. Chunks are decompressed straight into a page-aligned staging buffer
/// laid out like the file (memory offset ≡ file offset mod 4096) and written with O_DIRECT in whole
/// pages — no copy into the page cache, whose writeback on these machines is several times slower than
/// the disk — with the unaligned ends written normally. There are two staging buffers: while one is
/// being written (`DirectWrites`, a thread of its own), chunks are decompressed and verified into the
/// other, so the worker's core never waits on the disk. Sparse files are written chunk by chunk,
/// leaving all-zero chunks as holes. One per worker thread.
final class ContentWriter {
    static let page = 4096
    /// Files smaller than this are written the ordinary way.
    static let directThreshold: UInt64 = 1 << 20
    static let openDirect: Int32 = 0o40000
    /// Bytes gathered in a staging buffer before they are written.
    static let flushSize = 8 << 20

    let store: Store
    let compressor = Compressor(codec: .none)
    private var staging: UnsafeMutableRawBufferPointer
    private var spare: UnsafeMutableRawBufferPointer
    private let writes = DirectWrites()
    private var scratch: [UInt8] = []

    init(store: Store) {
        self.store = store
        let size = Self.flushSize + 2 * store.config.chunker.maxSize + Self.page
        staging = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: Self.page)
        spare = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: Self.page)
    }

    deinit {
        writes.stop()
        staging.deallocate()
        spare.deallocate()
    }

    /// Writes chunks `range` of `node`'s content, the first at file offset `offset`.
    /// - Returns: the bytes written (holes excluded).
    /// `fd` is the descriptor that created the file; `path` names it in errors only.
    func write(fd buffered: Int32, path: PathBytes, _ node: Node, range: Range<Int>, offset: Int) throws -> UInt64 {
        let content = node.content ?? []
        var direct: Int32 = -1
        if node.sparse != true && node.size >= Self.directThreshold {
            // O_DIRECT needs a descriptor of its own. "/proc/self/fd/N" reopens the very file `fd` is
            // open on (no name is looked up again); -1 where refused (tmpfs), and the writes stay buffered.
            direct = open("/proc/self/fd/\(buffered)", O_WRONLY | O_CLOEXEC | Self.openDirect)
        }
        // The buffer being written must be done with before this returns (and before `direct` closes).
        let opened = direct
        defer {
            _ = writes.wait()
            if opened >= 0 { close(opened) }
        }

        // staging[m] holds file byte base + m; data occupies [start, end).
        var base = offset & ~(Self.page - 1)
        var start = offset - base
        var end = start
        var written: UInt64 = 0

        /// Writes staging[from..<to] through the page cache.
        func put(_ from: Int, _ to: Int) throws {
            let error = Self.writeFully(buffered, staging.baseAddress! + from, count: to - from, at: off_t(base + from))
            if error != 0 { throw FileSystem.Failure(path: path, operation: "write", code: error) }
        }

        /// Waits for the buffer being written; where O_DIRECT was refused after all, writes it again
        /// through the page cache.
        func settle() throws {
            guard let done = writes.wait() else { return }
            if done.error == 0 { return }
            guard done.error == EINVAL else { throw FileSystem.Failure(path: path, operation: "write", code: done.error) }
            direct = -1  // the filesystem refused O_DIRECT after all
            let error = Self.writeFully(buffered, done.bytes, count: done.count, at: done.offset)
            if error != 0 { throw FileSystem.Failure(path: path, operation: "write", code: error) }
        }

        func flush(final: Bool) throws {
            if direct < 0 {
                try put(start, end)
                start = end
            } else {
                let alignedStart = (start + Self.page - 1) & ~(Self.page - 1)
                let alignedEnd = end & ~(Self.page - 1)
                if alignedEnd > alignedStart {
                    try put(start, alignedStart)
                    try settle()
                    if direct >= 0 {
                        // Written on the writes thread; chunks go on into the other buffer meanwhile.
                        writes.start(fd: direct, bytes: UnsafeRawPointer(staging.baseAddress! + alignedStart), count: alignedEnd - alignedStart, offset: off_t(base + alignedStart))
                    } else {
                        try put(alignedStart, alignedEnd)
                    }
                    start = alignedEnd
                }
                if final {
                    try settle()
                    try put(start, end)
                    start = end
                }
            }
            // Keep the unwritten tail (less than a page) at the same alignment, at the front of the
            // other buffer (this one may still be being written).
            let keepFrom = start & ~(Self.page - 1)
            if keepFrom > 0 {
                memcpy(spare.baseAddress!, staging.baseAddress! + keepFrom, end - keepFrom)
                swap(&staging, &spare)
                base += keepFrom
                start -= keepFrom
                end -= keepFrom
            }
        }

        let sparse = node.sparse == true
        var position = offset
        for index in range {
            let id = content[index]
            guard let location = store.index.lookup(id) else { throw StoreError.missingBlob(id) }
            let length = try store.checkBounds(location, expecting: .data)
            if end + length > staging.count || end >= Self.flushSize { try flush(final: false) }
            let chunk = UnsafeMutableRawBufferPointer(rebasing: staging[end..<(end + length)])
            try store.readBlob(location, expecting: .data, into: chunk, scratch: &scratch, compressor: compressor)
            if sparse {
                if !Self.isZero(UnsafeRawBufferPointer(chunk)) {
                    end += length
                    try flush(final: true)
                    written += UInt64(length)
                }
                // A zero chunk of a sparse file stays a hole: skip it.
                position += length
                base = position & ~(Self.page - 1)
                start = position - base
                end = start
                continue
            }
            end += length
            written += UInt64(length)
            position += length
        }
        try flush(final: true)
        return written
    }

    /// pwrite until all `count` bytes are written. - Returns: 0, or the errno that stopped it.
    static func writeFully(_ fd: Int32, _ bytes: UnsafeRawPointer, count: Int, at offset: off_t) -> Int32 {
        var done = 0
        while done < count {
            let n = pwrite(fd, bytes + done, count - done, offset + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        return 0
    }

    /// True when every byte is zero (a sparse file's hole).
    static func isZero(_ b: UnsafeRawBufferPointer) -> Bool {
        let words = b.count / 8
        let p = b.baseAddress!
        var acc: UInt64 = 0
        for i in 0..<words { acc |= p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) }
        for i in (words * 8)..<b.count { acc |= UInt64(b[i]) }
        return acc == 0
    }
}

/// One O_DIRECT write at a time on a thread of its own, so the worker that filled the buffer can fill
/// another meanwhile.
final class DirectWrites: @unchecked Sendable {  // state guarded by `condition`
    struct Write {
        var fd: Int32
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
    func start(fd: Int32, bytes: UnsafeRawPointer, count: Int, offset: off_t) {
        condition.withLock {
            precondition(!running, "DirectWrites: a write is already running")
            pending = Write(fd: fd, bytes: bytes, count: count, offset: offset)
            running = true
            condition.broadcast()
        }
    }

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
