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
    fileprivate var staging: UnsafeMutableRawBufferPointer
    fileprivate var spare: UnsafeMutableRawBufferPointer
    fileprivate let writes = DirectWrites()
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
        let sparse = node.sparse == true
        var file = StagedFile(writer: self, buffered: buffered, path: path, offset: offset, direct: !sparse && node.size >= Self.directThreshold)
        defer { file.close() }
        var written: UInt64 = 0
        var position = offset
        for index in range {
            let id = content[index]
            guard let location = store.index.lookup(id) else { throw StoreError.missingBlob(id) }
            let length = try store.checkBounds(location, expecting: .data)
            let chunk = try file.reserve(length)
            try store.readBlob(location, expecting: .data, into: chunk, scratch: &scratch, compressor: compressor)
            position += length
            if sparse && Self.isZero(UnsafeRawBufferPointer(chunk)) {
                file.restart(at: position)  // a zero chunk of a sparse file stays a hole
                continue
            }
            file.commit(length)
            written += UInt64(length)
            if sparse {
                try file.flush(final: true)
                file.restart(at: position)
            }
        }
        try file.flush(final: true)
        return written
    }

    /// One `write` call's view of the staging buffers: `staging[m]` holds file byte `base + m`; data
    /// occupies `start..<end`.
    private struct StagedFile {
        unowned let writer: ContentWriter
        let buffered: Int32
        let path: PathBytes
        /// The O_DIRECT descriptor (-1: buffered writes only), and the one to close at the end.
        var direct: Int32
        let opened: Int32
        var base: Int
        var start: Int
        var end: Int

        init(writer: ContentWriter, buffered: Int32, path: PathBytes, offset: Int, direct wanted: Bool) {
            self.writer = writer
            self.buffered = buffered
            self.path = path
            // O_DIRECT needs a descriptor of its own. "/proc/self/fd/N" reopens the very file `buffered`
            // is open on (no name is looked up again); -1 where refused (tmpfs): writes stay buffered.
            direct = wanted ? open("/proc/self/fd/\(buffered)", O_WRONLY | O_CLOEXEC | ContentWriter.openDirect) : -1
            opened = direct
            base = offset & ~(ContentWriter.page - 1)
            start = offset - base
            end = start
        }

        /// The buffer being written must be done with before `write` returns (and `direct` closes).
        func close() {
            _ = writer.writes.wait()
            if opened >= 0 { Glibc.close(opened) }
        }

        /// Room for `length` more bytes at `end` (flushing first when the buffer is full enough).
        mutating func reserve(_ length: Int) throws -> UnsafeMutableRawBufferPointer {
            if end + length > writer.staging.count || end >= ContentWriter.flushSize { try flush(final: false) }
            return UnsafeMutableRawBufferPointer(rebasing: writer.staging[end..<(end + length)])
        }

        /// The `length` bytes reserved last are data to write.
        mutating func commit(_ length: Int) { end += length }

        /// Starts again (empty) at file offset `position` (after a hole).
        mutating func restart(at position: Int) {
            base = position & ~(ContentWriter.page - 1)
            start = position - base
            end = start
        }

        /// Writes staging[from..<to] through the page cache.
        func put(_ from: Int, _ to: Int) throws {
            let error = ContentWriter.writeFully(buffered, writer.staging.baseAddress! + from, count: to - from, at: off_t(base + from))
            if error != 0 { throw FileSystem.Failure(path: path, operation: "write", code: error) }
        }

        /// Waits for the buffer being written; where O_DIRECT was refused after all, writes it again
        /// through the page cache.
        mutating func settle() throws {
            guard let done = writer.writes.wait() else { return }
            if done.error == 0 { return }
            guard done.error == EINVAL else { throw FileSystem.Failure(path: path, operation: "write", code: done.error) }
            direct = -1  // the filesystem refused O_DIRECT after all
            let error = ContentWriter.writeFully(buffered, done.bytes, count: done.count, at: done.offset)
            if error != 0 { throw FileSystem.Failure(path: path, operation: "write", code: error) }
        }

        /// Writes what is staged: whole pages with O_DIRECT on the writes thread (the other buffer takes
        /// chunks meanwhile), the unaligned ends through the page cache; `final` writes the tail too.
        mutating func flush(final: Bool) throws {
            let page = ContentWriter.page
            if direct < 0 {
                try put(start, end)
                start = end
            } else {
                let alignedStart = (start + page - 1) & ~(page - 1)
                let alignedEnd = end & ~(page - 1)
                if alignedEnd > alignedStart {
                    try put(start, alignedStart)
                    try settle()
                    if direct >= 0 {
                        writer.writes.start(
                            fd: direct, bytes: UnsafeRawPointer(writer.staging.baseAddress! + alignedStart), count: alignedEnd - alignedStart,
                            offset: off_t(base + alignedStart))
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
            let keepFrom = start & ~(page - 1)
            if keepFrom > 0 {
                memcpy(writer.spare.baseAddress!, writer.staging.baseAddress! + keepFrom, end - keepFrom)
                swap(&writer.staging, &writer.spare)
                base += keepFrom
                start -= keepFrom
                end -= keepFrom
            }
        }
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
