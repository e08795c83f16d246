import Compression
import Foundation

/// Collects blobs into packs of about `PackFormat.targetSize` bytes and writes each full pack durably.
/// One `PackWriter` serves one backup; every worker may call `add` concurrently.
///
/// Ordering is what makes a crash harmless: packs are written first, then (by `commit`) the index segment
/// that lists them, and only then does the caller write the snapshot record. Anything written before a
/// crash is at worst unreferenced, for prune to remove.
public final class PackWriter: @unchecked Sendable {  // state guarded by `lock`
    let store: Store
    private let lock = NSLock()
    private var buffer: [UInt8] = []
    private var entries: [BlobEntry] = []
    /// Statistics of what this writer stored.
    public private(set) var blobsAdded = 0
    public private(set) var rawBytesAdded: UInt64 = 0
    public private(set) var storedBytesAdded: UInt64 = 0
    public private(set) var packsWritten = 0

    init(store: Store) {
        self.store = store
        buffer.reserveCapacity(PackFormat.targetSize + (4 << 20))
    }

    /// Appends a blob the caller has claimed (`ChunkIndex.claim`). When the pack is full it is written
    /// before `add` returns, by the calling thread.
    public func add(id: ChunkID, type: BlobType, codec: Codec.Kind, stored: UnsafeRawBufferPointer, rawLength: Int) throws {
        var full: (bytes: [UInt8], entries: [BlobEntry])?
        lock.lock()
        entries.append(
            BlobEntry(
                id: id, type: type, codec: codec, offset: UInt32(buffer.count), storedLength: UInt32(stored.count),
                rawLength: UInt32(rawLength)))
        buffer.append(contentsOf: stored)
        blobsAdded += 1
        rawBytesAdded += UInt64(rawLength)
        storedBytesAdded += UInt64(stored.count)
        if buffer.count >= PackFormat.targetSize {
            full = takePack()
        }
        lock.unlock()
        if let full { try write(full.bytes, full.entries) }
    }

    /// Writes the last, partly filled pack and an index segment listing every blob this writer added.
    /// - Returns: the segment's name, or nil when nothing was added.
    @discardableResult
    public func commit() throws -> String? {
        lock.lock()
        let last = entries.isEmpty ? nil : takePack()
        lock.unlock()
        if let last { try write(last.bytes, last.entries) }
        return try store.writeIndexSegment()
    }

    private func takePack() -> (bytes: [UInt8], entries: [BlobEntry]) {
        let taken = (buffer, entries)
        buffer = []
        buffer.reserveCapacity(PackFormat.targetSize + (4 << 20))
        entries = []
        return taken
    }

    private func write(_ bytes: [UInt8], _ entries: [BlobEntry]) throws {
        let id = ChunkID.random()
        let trailer = PackFormat.encodeTrailer(entries)
        let directory = try store.packDirectory(for: id, create: true)
        try bytes.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws in
            try trailer.withUnsafeBytes { (t: UnsafeRawBufferPointer) throws in
                try FileIO.writeAtomically(directory: directory, name: id.hex, parts: [b, t])
            }
        }
        store.index.record(entries, pack: id)
        lock.withLock { packsWritten += 1 }
    }
}
