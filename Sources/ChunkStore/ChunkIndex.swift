import Foundation

/// The store's dedup index: the immutable segments on disk plus the blobs written since they were loaded.
///
/// Thread-safe: lookups and inserts may come from every worker. Segment lookups take no lock.
public final class ChunkIndex: @unchecked Sendable {
    public private(set) var segments: [IndexSegment]
    /// Segments that failed their check; their blobs are unknown (reported by restore and check).
    public let damagedSegments: [(name: String, error: StoreError)]
    private let lock = NSLock()
    private var added: [ChunkID: BlobLocation] = [:]
    /// Blobs a worker has claimed but not yet written (so two workers never store the same chunk).
    private var claimed: Set<ChunkID> = []

    init(segments: [IndexSegment], damaged: [(name: String, error: StoreError)]) {
        self.segments = segments
        self.damagedSegments = damaged
    }

    private var currentSegments: [IndexSegment] { lock.withLock { segments } }

    public func lookup(_ id: ChunkID) -> BlobLocation? {
        for segment in currentSegments.reversed() {
            if let found = segment.lookup(id) { return found }
        }
        lock.lock()
        defer { lock.unlock() }
        return added[id]
    }

    /// Claims `id` for writing: true when no segment, earlier write or other worker has it.
    public func claim(_ id: ChunkID) -> Bool {
        for segment in currentSegments where segment.lookup(id) != nil { return false }
        lock.lock()
        defer { lock.unlock() }
        if added[id] != nil || claimed.contains(id) { return false }
        claimed.insert(id)
        return true
    }

    /// Records blobs that are now durable in `pack`.
    func record(_ entries: [BlobEntry], pack: ChunkID) {
        lock.lock()
        defer { lock.unlock() }
        for e in entries {
            added[e.id] = BlobLocation(pack: pack, entry: e)
            claimed.remove(e.id)
        }
    }

    /// Every entry added since the segments were loaded.
    func addedLocations() -> [BlobLocation] {
        lock.lock()
        defer { lock.unlock() }
        return Array(added.values)
    }

    func appendSegment(_ segment: IndexSegment) {
        lock.lock()
        defer { lock.unlock() }
        segments.append(segment)
        added.removeAll()
    }

    /// Total number of indexed blobs (segments may overlap after a crash; this counts entries).
    public var entryCount: Int { segments.reduce(0) { $0 + $1.count } }
}
