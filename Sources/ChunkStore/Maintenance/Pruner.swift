import Compression
import Foundation

/// Removes data no snapshot references (`shadowmover prune`): marks every blob reachable from the
/// snapshots, deletes packs with nothing live, repacks packs whose unused share exceeds `maxUnused`,
/// and rewrites the index.
///
/// Crash-safe at every step, because nothing is deleted before what replaces it is durable:
/// new packs → their index segment → the new full index segment → old segments deleted → old packs
/// deleted. A crash leaves at worst unreferenced packs or a redundant segment, which the next prune
/// removes (with any temporary file a killed writer left: under the exclusive lock nobody is writing).
///
/// Memory, per blob in the store: the live set (20 bytes per indexed blob, sized once: `LiveSet`), the
/// pack of each live blob (4 bytes), and where each tree and content list is (about 52 bytes each:
/// `MetadataLocations`). The index segments are only read sequentially, in 64 KiB blocks. Plus one
/// tree and one content list at a time, and two packs' buffers while repacking.
public struct Pruner {
    /// The store pruned.
    public let store: Store
    /// Repack a pack when more than this share of its bytes is unused.
    public var maxUnused = 0.05
    /// Reports of the repacking (the bytes to copy) and deleting (nil: none).
    public var progress: ProgressSink?

    /// A pruner of `store` (`maxUnused` 5%, no progress reports).
    public init(store: Store) { self.store = store }

    /// What a prune did.
    public struct Report: Codable, Sendable {
        /// Snapshots whose data was kept.
        public var snapshots = 0
        /// Blobs they reference.
        public var liveBlobs = 0
        /// Packs in the store before the prune.
        public var packs = 0
        /// Packs deleted with nothing live in them.
        public var packsDeleted = 0
        /// Packs whose live blobs were copied out before they were deleted.
        public var packsRepacked = 0
        /// New packs those blobs went into.
        public var packsWritten = 0
        /// Stored bytes no longer in the store.
        public var bytesFreed: UInt64 = 0
        /// Stored bytes copied into new packs.
        public var bytesRepacked: UInt64 = 0
        /// Temporary files left by killed writers, removed.
        public var temporaryFilesRemoved = 0
        /// Wall time of the whole prune.
        public var durationSeconds = 0.0
    }

    /// Prune's steps, in an order that is crash-safe at every point (see above).
    public func run() throws -> Report {
        let clock = ContinuousClock.now
        let lock = try StoreLock.acquire(store, exclusive: true, purpose: "prune")
        defer { lock.release() }
        var report = Report()
        try store.writeIndexSegment()  // anything this process added, so the segments hold it all
        report.temporaryFilesRemoved = try removeTemporaryFiles()
        let live = try markLive(&report)
        var placement = try placeLive(live)
        let (delete, repack) = try choosePacks(placement, &report)
        let meter = ProgressMeter(action: "prune")
        meter.found(bytes: repack.reduce(0) { $0 + placement.liveBytes(in: $1) }, files: delete.count + repack.count)
        meter.totalKnown()
        meter.start(progress)
        defer { meter.stop() }
        try copyLive(out: repack, live: live, placement: &placement, meter: meter, &report)
        placement.packOf = []  // 4 bytes a live blob, not needed while the index is rewritten
        try writeIndex(keeping: live)
        try deletePacks(delete, repack, meter: meter)
        report.packsDeleted = delete.count
        report.durationSeconds = (ContinuousClock.now - clock).seconds
        return report
    }

    /// Mark: every blob reachable from a snapshot. The index has at least as many entries as there
    /// are live blobs, so the set is sized once.
    private func markLive(_ report: inout Report) throws -> LiveSet {
        let (records, damaged) = try store.snapshots()
        if let d = damaged.first { throw StoreError.pruneRefused(reason: "\(d); the data it references would be deleted", fix: "run `shadowmover check`") }
        report.snapshots = records.count
        let segments = store.index.segments
        let metadata = try MetadataLocations(segments)
        let live = LiveSet(limit: segments.reduce(0) { $0 + $1.count })
        var visited = Set<ChunkID>()  // trees (a data chunk may have a tree's bytes: trees are tracked apart)
        func keep(_ id: ChunkID) throws {
            if live.insert(id) == nil {
                throw StoreError.pruneRefused(reason: "the snapshots reference more blobs than the index holds", fix: "run `shadowmover check`")
            }
        }
        func mark(_ tree: ChunkID) throws {
            guard visited.insert(tree).inserted else { return }
            try keep(tree)
            let t: Tree
            do { t = try store.loadTree(tree, at: metadata.location(of: tree)) } catch {
                throw StoreError.pruneRefused(reason: "\(error)", fix: "run `shadowmover check`")
            }
            for node in t.nodes {
                for id in node.content ?? [] { try keep(id) }
                for list in node.contentLists ?? [] {  // one list (16,384 ids) in memory at a time
                    try keep(list)
                    let ids: [ChunkID]
                    do { ids = try store.loadContentList(list, at: metadata.location(of: list)) } catch {
                        throw StoreError.pruneRefused(reason: "\(error)", fix: "run `shadowmover check`")
                    }
                    for id in ids { try keep(id) }
                }
                if let sub = node.subtree { try mark(sub) }
            }
        }
        for (_, record) in records { try mark(record.tree) }
        live.sort()
        report.liveBlobs = live.count
        return live
    }

    /// Where the live blobs are: each one's pack (a number), and the live bytes of each pack.
    struct Placement {
        var packNumbers: [ChunkID: UInt32] = [:]
        var liveBytes: [UInt64] = []
        /// The pack number of each live blob, in the live set's order (`.max` once copied out).
        var packOf: [UInt32]

        func liveBytes(in pack: ChunkID) -> UInt64 { packNumbers[pack].map { liveBytes[Int($0)] } ?? 0 }
    }

    /// Finds each live blob's entry (the one a lookup finds) by one merge pass over the segments.
    private func placeLive(_ live: LiveSet) throws -> Placement {
        var placement = Placement(packOf: [UInt32](repeating: 0, count: live.count))
        var next = 0
        var lastMatched: LiveSet.Key?
        let segments = store.index.segments
        let merge = try SegmentMerge(segments)
        while let (id, s, entry) = try merge.next() {
            let key = LiveSet.Key(id)
            if key == lastMatched {
                throw StoreError.pruneRefused(
                    reason: "blobs \(id) and another share their first 128 bits, which prune tells blobs apart by", fix: "please report this")
            }
            guard next < live.count else { continue }
            if live[next] < key { break }  // a live id no segment has
            guard live[next] == key else { continue }
            guard let location = segments[s].location(of: entry) else {
                throw StoreError.pruneRefused(
                    reason: "index segment \(segments[s].name) has a malformed entry for \(id)", fix: "run `shadowmover repair index`")
            }
            let number =
                placement.packNumbers[location.pack]
                ?? {
                    placement.packNumbers[location.pack] = UInt32(placement.liveBytes.count)
                    placement.liveBytes.append(0)
                    return UInt32(placement.liveBytes.count - 1)
                }()
            placement.packOf[next] = number
            placement.liveBytes[Int(number)] += UInt64(location.entry.storedLength)
            lastMatched = key
            next += 1
        }
        if next < live.count {
            throw StoreError.pruneRefused(reason: "blob \(live[next].hex) is referenced but not in the index", fix: "run `shadowmover check`")
        }
        return placement
    }

    /// Sweep: packs with nothing live go, packs with more than `maxUnused` dead are repacked.
    private func choosePacks(_ placement: Placement, _ report: inout Report) throws -> (delete: [ChunkID], repack: [ChunkID]) {
        var delete: [ChunkID] = []
        var repack: [ChunkID] = []
        let packs = try store.packIDs()
        report.packs = packs.count
        for pack in packs {
            let used = placement.liveBytes(in: pack)
            let entries: [BlobEntry]
            do { entries = try store.readPackTrailer(pack) } catch {
                if used == 0 { delete.append(pack); continue }  // damaged and unused: just remove
                throw StoreError.pruneRefused(reason: "\(error)", fix: "run `shadowmover check`")
            }
            let total = entries.reduce(UInt64(0)) { $0 + UInt64($1.storedLength) }
            if used == 0 {
                delete.append(pack)
                report.bytesFreed += total
            } else if total > 0, Double(total - used) / Double(total) > maxUnused {
                repack.append(pack)  // its trailer is read again then: trailers of many packs add up
                report.bytesFreed += total - used
            }
        }
        return (delete, repack)
    }

    /// Repack: copies the live blobs of `repack` as stored (no recompression) into new packs, each
    /// from the pack the index points to, once; in an encrypted store opened (authenticated) and
    /// sealed again under the new pack's key. Their index segment is written before anything goes.
    private func copyLive(out repack: [ChunkID], live: LiveSet, placement: inout Placement, meter: ProgressMeter, _ report: inout Report) throws {
        guard !repack.isEmpty else { return }
        let writer = store.makePackWriter(lean: true)
        defer { writer.cancel() }
        var scratch: [UInt8] = []
        for pack in repack {
            let number = placement.packNumbers[pack]!
            let entries = try store.readPackTrailer(pack)
            for e in entries {
                guard let i = live.index(of: e.id), placement.packOf[i] == number else { continue }
                placement.packOf[i] = .max  // copied
                let n = Int(e.storedLength)
                if scratch.count < n { scratch = [UInt8](repeating: 0, count: n) }
                let got = try scratch.withUnsafeMutableBytes {
                    try store.readPack(pack, at: Int(e.offset), into: UnsafeMutableRawBufferPointer(rebasing: $0[..<n]))
                }
                guard got == n else { throw StoreError.damagedPack(pack: pack.hex, reason: "truncated") }
                let buffer = try writer.checkout(room: n)
                try scratch.withUnsafeBytes { stored in
                    try store.cipher.openBlob(UnsafeRawBufferPointer(rebasing: stored[..<n]), pack: pack, entry: e) { plain in
                        _ = buffer.append(id: e.id, type: e.type, rawLength: Int(e.rawLength)) { free in
                            free.copyMemory(from: plain)
                            return (e.codec, plain.count)
                        }
                    }
                }
                try writer.checkin(buffer)
                report.bytesRepacked += UInt64(n)
                meter.done(n)
            }
            meter.finishedFile()
        }
        try writer.commit()
        report.packsWritten = writer.packsWritten
        report.packsRepacked = repack.count
    }

    /// The new index: the newest entry of every live blob (repacked ones now point to their new
    /// packs), streamed from the segments; then the old segments go.
    private func writeIndex(keeping live: LiveSet) throws {
        let current = store.index.segments
        var written: (name: String, count: Int)?
        _ = try store.writeSegment { directory in
            written = try IndexSegment.writeMerged(current, into: directory, keep: live.ascendingFilter)
            return written?.name
        }
        guard written?.count ?? 0 == live.count else {
            throw StoreError.pruneRefused(
                reason: "the new index would hold \(written?.count ?? 0) of \(live.count) live blobs; nothing was deleted", fix: "run `shadowmover check`")
        }
        CrashPoint.step()
        for segment in current.map(\.name) where segment != written?.name {
            try store.backend.delete(ObjectKey.segment(segment))
            CrashPoint.step()
        }
    }

    /// Last, the packs nothing in the new index points to.
    private func deletePacks(_ delete: [ChunkID], _ repack: [ChunkID], meter: ProgressMeter) throws {
        for (i, pack) in (delete + repack).enumerated() {
            try store.deletePack(pack)
            CrashPoint.step()
            if i < delete.count { meter.finishedFile() }  // a repacked one counted when it was copied
        }
    }

    /// Removes the temporary files interrupted writes left (local stores: `.tmp-…` files).
    private func removeTemporaryFiles() throws -> Int { try store.backend.removeTemporaries() }
}

/// Where every tree and content-list blob is, from one pass over the index segments: marking then
/// reads them without searching the index (a search maps pages of every segment it probes — 64 KiB
/// to 2 MiB a probe with the kernel's fault-around and large folios). Memory: 52 bytes per such blob.
/// One stored with another type label (its bytes were first seen as file data) is not listed:
/// `location(of:)` is nil and the index is searched.
struct MetadataLocations {
    private var ids: [ChunkID] = []
    private var entries: [(pack: UInt32, offset: UInt32, storedLength: UInt32, rawLength: UInt32, codec: Codec.Kind, type: BlobType)] = []
    private var packs: [ChunkID] = []

    init(_ segments: [IndexSegment]) throws {
        var packNumbers: [ChunkID: UInt32] = [:]
        let merge = try SegmentMerge(segments)
        while let (_, s, entry) = try merge.next() {
            guard entry.typeByte != BlobType.data.rawValue, let l = segments[s].location(of: entry) else { continue }
            let pack =
                packNumbers[l.pack]
                ?? {
                    packNumbers[l.pack] = UInt32(packs.count)
                    packs.append(l.pack)
                    return UInt32(packs.count - 1)
                }()
            ids.append(l.entry.id)  // ascending: the merge yields ids in order
            entries.append((pack, l.entry.offset, l.entry.storedLength, l.entry.rawLength, l.entry.codec, l.entry.type))
        }
    }

    func location(of id: ChunkID) -> BlobLocation? {
        var lo = 0, hi = ids.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ids[mid] == id {
                let e = entries[mid]
                return BlobLocation(
                    pack: packs[Int(e.pack)],
                    entry: BlobEntry(id: id, type: e.type, codec: e.codec, offset: e.offset, storedLength: e.storedLength, rawLength: e.rawLength))
            }
            if ids[mid] < id { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }
}
