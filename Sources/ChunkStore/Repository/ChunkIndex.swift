import Foundation

/// The store's dedup index: the immutable segments on disk (memory-mapped) plus the blobs written
/// since they were loaded.
///
/// Thread-safe. The in-memory part is split into shards by the id's first bits, each with its own
/// lock, so workers claiming different chunks almost never wait for each other.
public final class ChunkIndex: @unchecked Sendable {
    private let segmentsLock = NSLock()
    private var segmentList: [IndexSegment]
    /// Segments that failed their check; their blobs are unknown (reported by restore and check).
    public let damagedSegments: [(name: String, error: StoreError)]
    private let shards: [Shard]
    static let shardBits = 6

    final class Shard: @unchecked Sendable {  // guarded by `lock`
        let lock = NSLock()
        var added: [ChunkID: BlobLocation] = [:]
        /// Claimed by a worker, not yet in a written pack (so two workers never store the same chunk).
        var claimed: Set<ChunkID> = []
    }

    init(segments: [IndexSegment], damaged: [(name: String, error: StoreError)]) {
        self.segmentList = segments
        self.damagedSegments = damaged
        self.shards = (0..<(1 << Self.shardBits)).map { _ in Shard() }
    }

    /// The segments loaded, oldest first.
    public var segments: [IndexSegment] { segmentsLock.withLock { segmentList } }

    @inline(__always) private func shard(_ id: ChunkID) -> Shard { shards[Int(id.w0 >> UInt64(64 - Self.shardBits))] }

    /// Where blob `id` is: the newest segment that lists it, or this process's additions.
    public func lookup(_ id: ChunkID) -> BlobLocation? {
        for segment in segments.reversed() {
            if let found = segment.lookup(id) { return found }
        }
        let s = shard(id)
        return s.lock.withLock { s.added[id] }
    }

    /// Whether the store has (or is about to have) this blob.
    public func contains(_ id: ChunkID) -> Bool {
        for segment in segments where segment.lookup(id) != nil { return true }
        let s = shard(id)
        return s.lock.withLock { s.added[id] != nil || s.claimed.contains(id) }
    }

    /// Claims `id` for writing: true when no segment, earlier write or other worker has it.
    public func claim(_ id: ChunkID) -> Bool {
        for segment in segments where segment.lookup(id) != nil { return false }
        let s = shard(id)
        return s.lock.withLock { s.added[id] == nil && s.claimed.insert(id).inserted }
    }

    private let countLock = NSLock()
    private var addedCount = 0

    /// Entries held in memory (not yet in a segment).
    var pendingCount: Int { countLock.withLock { addedCount } }

    /// Records blobs that are now durable in `pack`.
    func record(_ entries: [BlobEntry], pack: ChunkID) {
        countLock.withLock { addedCount += entries.count }
        for e in entries {
            let s = shard(e.id)
            s.lock.withLock {
                s.added[e.id] = BlobLocation(pack: pack, entry: e)
                s.claimed.remove(e.id)
            }
        }
    }

    /// Every entry added since the segments were loaded.
    func addedLocations() -> [BlobLocation] {
        shards.flatMap { s in s.lock.withLock { Array(s.added.values) } }
    }

    /// Makes `segment` part of the index and forgets the in-memory entries it now holds.
    func appendSegment(_ segment: IndexSegment, covering locations: [BlobLocation]) {
        segmentsLock.withLock { segmentList.append(segment) }
        countLock.withLock { addedCount -= locations.count }
        for l in locations {
            let s = shard(l.entry.id)
            s.lock.withLock { _ = s.added.removeValue(forKey: l.entry.id) }
        }
    }

    func replaceSegments(_ old: [IndexSegment], with new: IndexSegment) {
        segmentsLock.withLock {
            let names = Set(old.map(\.name))
            segmentList.removeAll { names.contains($0.name) }
            segmentList.append(new)
        }
    }

    /// Total number of indexed blobs (segments may overlap after a crash; this counts entries).
    public var entryCount: Int { segments.reduce(0) { $0 + $1.count } }
}

extension ChunkIndex {
    /// Looks up every indexed id once (in segment order), as a backup that finds every chunk known
    /// would: used to measure the index's resident memory per chunk.
    /// - Returns: the number of lookups and how many found their entry.
    public func lookupEveryEntry() -> (lookups: Int, found: Int) {
        var lookups = 0, found = 0
        for segment in segments {
            for i in 0..<segment.count {
                lookups += 1
                if lookup(segment.idAt(i)) != nil { found += 1 }
            }
        }
        return (lookups, found)
    }
}
