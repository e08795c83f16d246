import ChunkStore
import Compression
import Foundation

/// Writes restored file content. Chunks are decompressed straight into a page-aligned staging buffer
/// laid out like the file (memory offset ≡ file offset mod 4096) and written with O_DIRECT in whole
/// pages — no copy into the page cache, whose writeback on these machines is several times slower than
/// the disk — with the unaligned ends written normally. Sparse files are written chunk by chunk,
/// leaving all-zero chunks as holes. One per worker thread.
final class ContentWriter {
    static let page = 4096
    /// Files smaller than this are written the ordinary way.
    static let directThreshold: UInt64 = 1 << 20
    static let openDirect: Int32 = 0o40000

    let store: Store
    let compressor = Compressor(codec: .none)
    private let staging: UnsafeMutableRawBufferPointer
    private var scratch: [UInt8] = []

    init(store: Store) {
        self.store = store
        staging = UnsafeMutableRawBufferPointer.allocate(byteCount: 8 << 20 + 2 * store.config.chunker.maxSize + Self.page, alignment: Self.page)
    }

    deinit { staging.deallocate() }

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
        defer { if direct >= 0 { close(direct) } }

        // staging[m] holds file byte base + m; data occupies [start, end).
        var base = offset & ~(Self.page - 1)
        var start = offset - base
        var end = start
        var written: UInt64 = 0

        func put(_ fd: Int32, _ from: Int, _ to: Int) throws {
            var done = from
            while done < to {
                let n = pwrite(fd, staging.baseAddress! + done, to - done, off_t(base + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    if fd == direct && errno == EINVAL {  // the filesystem refused after all
                        direct = -1
                        try put(buffered, done, to)
                        return
                    }
                    throw FileSystem.Failure(path: path, operation: "write", code: errno)
                }
                done += n
            }
        }

        func flush(final: Bool) throws {
            if direct < 0 {
                try put(buffered, start, end)
                start = end
            } else {
                let alignedStart = (start + Self.page - 1) & ~(Self.page - 1)
                let alignedEnd = end & ~(Self.page - 1)
                if alignedEnd > alignedStart {
                    try put(buffered, start, alignedStart)
                    try put(direct, alignedStart, alignedEnd)
                    start = alignedEnd
                }
                if final {
                    try put(buffered, start, end)
                    start = end
                }
            }
            // Keep the unwritten tail (less than a page) at the same alignment, at the front.
            let keepFrom = start & ~(Self.page - 1)
            if keepFrom > 0 {
                memmove(staging.baseAddress!, staging.baseAddress! + keepFrom, end - keepFrom)
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
            if end + length > staging.count { try flush(final: false) }
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
