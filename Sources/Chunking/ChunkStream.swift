import Foundation

/// Streams bytes from any source through a `FastCDC` chunker, whatever the sizes of the pieces the
/// source delivers.
///
/// The stream owns one buffer of `capacity` bytes. A producer writes into its free tail (`fill`), and
/// `nextChunk` hands out chunks as views into that buffer — no copy between the read and the hash or
/// compressor. A view stays valid until the next call to `fill` or `append`, which may move unconsumed
/// bytes to the front.
///
/// Cut points do not depend on how the input was split: `nextChunk` resumes the search for the current
/// chunk's end where the last call left it (`FastCDC.Scan`), so each byte is hashed once, and a chunk is
/// returned as soon as its end is certain — a cut point found, `maxSize` reached, or the input ended.
/// Only the uncut start of one chunk ever waits in the buffer for more input.
///
/// Not thread-safe: one stream belongs to one worker at a time.
public final class ChunkStream {
    /// The chunker that cuts the stream.
    public let chunker: FastCDC
    private let storage: UnsafeMutableRawBufferPointer
    private var start = 0  // first unconsumed byte
    private var end = 0  // one past the last buffered byte
    private var ended = false
    private var scan: FastCDC.Scan
    /// Offset in the whole stream of the next chunk to be returned.
    public private(set) var offset: UInt64 = 0

    /// - Parameter capacity: buffer size; at least `maxSize` plus room for a read (default: twice `maxSize`).
    public init(chunker: FastCDC, capacity: Int? = nil) {
        self.chunker = chunker
        scan = chunker.start
        let wanted = max(capacity ?? 2 * chunker.parameters.maxSize, chunker.parameters.maxSize + (1 << 16))
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: wanted, alignment: 64)
    }

    deinit { storage.deallocate() }

    /// Starts a new input stream, keeping the buffer.
    public func reset() {
        start = 0
        end = 0
        ended = false
        scan = chunker.start
        offset = 0
    }

    /// Bytes buffered but not yet returned as chunks.
    public var buffered: Int { end - start }

    /// Lets `read` write into the free tail of the buffer; it returns how many bytes it wrote, 0 for
    /// the end of the input. Unconsumed bytes are first moved to the front when that frees space.
    /// - Returns: the number of bytes `read` wrote.
    @discardableResult
    public func fill(_ read: (UnsafeMutableRawBufferPointer) throws -> Int) rethrows -> Int {
        precondition(!ended, "fill after the end of the input")
        compactIfNeeded()
        let free = UnsafeMutableRawBufferPointer(rebasing: storage[end...])
        guard !free.isEmpty else { return 0 }  // full: the caller must take chunks first
        let n = try read(free)
        precondition(n >= 0 && n <= free.count)
        if n == 0 { ended = true }
        end += n
        return n
    }

    /// Copies as much of `bytes` into the stream as fits and returns how many bytes it took; call
    /// `nextChunk` until it returns nil, then append the rest. For callers that hold input in memory.
    public func append(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard !bytes.isEmpty else { return 0 }
        return fill { free in
            let n = min(free.count, bytes.count)
            free.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[..<n]))
            return n
        }
    }

    /// Marks the end of the input: the remaining bytes become the last chunk(s).
    public func finish() { ended = true }

    /// Free bytes at the buffer's tail after compaction.
    public var freeSpace: Int { storage.count - (end - start) }

    /// The next chunk, or nil when more input is needed (or everything was returned).
    public func nextChunk() -> UnsafeRawBufferPointer? {
        guard end > start else { return nil }
        let view = UnsafeRawBufferPointer(rebasing: storage[start..<end])
        guard let length = chunker.cut(view, resuming: &scan, final: ended) else { return nil }
        scan = chunker.start
        let chunk = UnsafeRawBufferPointer(rebasing: view[..<length])
        start += length
        offset += UInt64(length)
        return chunk
    }

    private func compactIfNeeded() {
        // Move the unconsumed tail (the uncut start of one chunk, less than maxSize bytes) to the front
        // once the free space after it is smaller than what is already consumed.
        guard start > 0, storage.count - end < start || start == end else { return }
        let count = end - start
        if count > 0 {
            memmove(storage.baseAddress!, storage.baseAddress! + start, count)
        }
        start = 0
        end = count
    }
}
