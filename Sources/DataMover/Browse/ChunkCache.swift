import ChunkStore
import Compression
import Foundation

/// Data chunks read, decompressed and verified, kept for the readers of single files (`mount`, `dump`)
/// in a cache bounded by bytes: memory stays bounded whatever is read. Two threads that want the
/// same chunk read it once (the second waits for the first), and `readAhead` loads the chunks a
/// sequential reader will want next on other threads, so one reader still keeps the cores busy.
public final class ChunkCache: @unchecked Sendable {  // state guarded by `condition`
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
        let result = Result { try store.loadBlob(id, at: location, expecting: .data) }
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
            let oldest = chunks.filter { $0.key != id }.min { $0.value.lastUse < $1.value.lastUse }!
            held -= oldest.value.bytes.count
            chunks.removeValue(forKey: oldest.key)
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
