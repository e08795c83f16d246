import ChunkStore
import Compression
import Foundation

/// Data chunks read, decompressed and verified, kept for the readers of single files (`mount`, `dump`)
/// in a cache bounded by bytes: memory stays bounded whatever is read. Two threads that want the
/// same chunk read it once (the second waits for the first), and `readAhead` loads the chunks a
/// sequential reader will want next on other threads, so one reader still keeps the cores busy.
public final class ChunkCache: @unchecked Sendable {  // state guarded by `condition`
    /// The store the chunks come from.
    public let store: Store
    private let capacity: Int
    private let condition = NSCondition()
    private var chunks: [ChunkID: (bytes: [UInt8], lastUse: UInt64)] = [:]
    private var loading: Set<ChunkID> = []
    private var held = 0
    private var clock: UInt64 = 0
    private var aheadInFlight = 0
    private let aheadLimit: Int
    private let aheadQueue = DispatchQueue(label: "chunk-read-ahead", attributes: .concurrent)
    /// Decompression contexts and read buffers, reused across reads (one per thread reading at once).
    private var readers: [Reader] = []

    private final class Reader {
        let compressor = Compressor(codec: .none)
        var scratch: [UInt8] = []
    }

    /// - Parameter capacity: bytes of decompressed chunks kept (at least a few of the chunker's largest).
    public init(store: Store, capacity: Int = 64 << 20) {
        self.store = store
        self.capacity = max(capacity, 4 * store.config.chunker.maxSize)
        aheadLimit = store.readers
    }

    /// A data chunk's bytes, verified against its id.
    public func chunk(_ id: ChunkID, at location: BlobLocation? = nil) throws -> [UInt8] {
        condition.lock()
        while true {
            clock += 1
            if let hit = chunks[id] {
                chunks[id]!.lastUse = clock
                condition.unlock()
                return hit.bytes
            }
            if !loading.contains(id) { break }
            condition.wait()
        }
        loading.insert(id)
        condition.unlock()
        let result = Result { try load(id, at: location) }
        condition.lock()
        defer {
            condition.broadcast()
            condition.unlock()
        }
        loading.remove(id)
        let bytes = try result.get()
        chunks[id] = (bytes, clock)
        held += bytes.count
        while held > capacity && chunks.count > 1 {
            var oldest: (id: ChunkID, lastUse: UInt64)?
            for (key, value) in chunks where key != id && value.lastUse < oldest?.lastUse ?? .max { oldest = (key, value.lastUse) }
            guard let oldest else { break }
            held -= chunks.removeValue(forKey: oldest.id)?.bytes.count ?? 0
        }
        return bytes
    }

    /// Reads, decompresses and verifies one chunk with a pooled reader.
    private func load(_ id: ChunkID, at known: BlobLocation?) throws -> [UInt8] {
        guard let location = known ?? store.index.lookup(id) else { throw StoreError.missingBlob(id) }
        let length = try store.checkBounds(location, expecting: .data)
        let reader = condition.withLock { readers.popLast() } ?? Reader()
        defer { condition.withLock { readers.append(reader) } }
        var bytes = [UInt8](unsafeUninitializedCapacity: length) { _, count in count = length }  // every byte is written below
        try bytes.withUnsafeMutableBytes {
            try store.readBlob(location, expecting: .data, into: $0, scratch: &reader.scratch, compressor: reader.compressor)
        }
        return bytes
    }

    /// Starts loading `ids` on other threads unless they are cached, being loaded, or too many
    /// read-aheads are running already. Errors are left for the read that needs the chunk.
    public func readAhead<C: Collection>(_ ids: C) where C.Element == ChunkID {
        condition.lock()
        var start: [ChunkID] = []
        for id in ids where chunks[id] == nil && !loading.contains(id) && aheadInFlight < aheadLimit {
            aheadInFlight += 1
            start.append(id)
        }
        condition.unlock()
        for id in start {
            aheadQueue.async {
                _ = try? self.chunk(id)
                self.condition.withLock { self.aheadInFlight -= 1 }
            }
        }
    }

    /// Bytes of chunks held now (tests check the bound).
    public var heldBytes: Int { condition.withLock { held } }
}
