import ChunkStore
import Foundation

/// One file of a snapshot, read at any offset through a `ChunkCache`: the chunk ids and where each
/// chunk starts, checked against the file's size when it is opened.
public final class StoredFile: @unchecked Sendable {  // `lastChunk` is a hint; races only cost a read-ahead
    /// The file's tree entry.
    public let node: Node
    private let cache: ChunkCache
    private let ids: [ChunkID]
    private let locations: [BlobLocation]
    /// Offset where chunk i ends.
    private let ends: [UInt64]
    private var lastChunk = -1
    /// Chunks loaded ahead of a sequential reader.
    public var readAheadChunks = 4

    /// The file's size in bytes.
    public var size: UInt64 { node.size }

    /// Opens `node` for reading: its chunk ids and their lengths, checked against its size (a mismatch is damage).
    public init(_ node: Node, cache: ChunkCache) throws {
        self.node = node
        self.cache = cache
        let store = cache.store
        ids = try store.content(of: node)
        var locations: [BlobLocation] = []
        var ends: [UInt64] = []
        locations.reserveCapacity(ids.count)
        ends.reserveCapacity(ids.count)
        var end: UInt64 = 0
        for id in ids {
            guard let l = store.index.lookup(id) else { throw StoreError.missingBlob(id) }
            locations.append(l)
            end += UInt64(l.entry.rawLength)
            ends.append(end)
        }
        guard end == node.size else {
            throw StoreError.damagedFile(path: node.name, reason: "its chunks hold \(end) bytes but its tree entry says \(node.size)")
        }
        self.locations = locations
        self.ends = ends
    }

    /// Copies the file's bytes from `offset` into `buffer`. - Returns: how many (fewer at the end).
    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset < node.size, buffer.count > 0 else { return 0 }
        // The first chunk that ends after `offset`.
        var low = 0, high = ends.count
        while low < high {
            let mid = (low + high) / 2
            if ends[mid] <= offset { low = mid + 1 } else { high = mid }
        }
        var index = low
        var position = offset
        var copied = 0
        while copied < buffer.count && index < ids.count {
            if index != lastChunk && index != lastChunk + 1 {
                lastChunk = index  // a jump: no read-ahead until the reader proves sequential
            } else if index == lastChunk + 1 {
                lastChunk = index
                cache.readAhead(ids[(index + 1)..<min(ids.count, index + 1 + readAheadChunks)])
            }
            let bytes = try cache.chunk(ids[index], at: locations[index])
            let start = index == 0 ? 0 : ends[index - 1]
            let from = Int(position - start)
            let n = min(bytes.count - from, buffer.count - copied)
            bytes.withUnsafeBytes { b in
                (buffer.baseAddress! + copied).copyMemory(from: b.baseAddress! + from, byteCount: n)
            }
            copied += n
            position += UInt64(n)
            index += 1
        }
        return copied
    }
}
