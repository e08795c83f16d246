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
    public let store: Store
    /// Repack a pack when more than this share of its bytes is unused.
    public var maxUnused = 0.05
    /// Reports of the repacking (the bytes to copy) and deleting (nil: none).
    public var progress: ProgressSink?

    public init(store: Store) { self.store = store }

    public struct Report: Codable, Sendable {
        public var snapshots = 0
        public var liveBlobs = 0
        public var packs = 0
        public var packsDeleted = 0
        public var packsRepacked = 0
        public var packsWritten = 0
        public var bytesFreed: UInt64 = 0
        public var bytesRepacked: UInt64 = 0
        /// Temporary files left by killed writers, removed.
        public var temporaryFilesRemoved = 0
        public var durationSeconds = 0.0
    }

    public func run() throws -> Report {
        let clock = ContinuousClock.now
        let lock = try StoreLock.acquire(store, exclusive: true, purpose: "prune")
        defer { lock.release() }
        var report = Report()
        try store.writeIndexSegment()  // anything this process added, so the segments hold it all
        report.temporaryFilesRemoved = try removeTemporaryFiles()

        // Mark: every blob reachable from a snapshot. The index has at least as many entries as
        // there are live blobs, so the set is sized once.
        let (records, damaged) = try store.snapshots()
        if let d = damaged.first { throw StoreError.refused("refusing to prune: \(d); the data it references would be deleted — run `shadowmover check`") }
        report.snapshots = records.count
        let segments = store.index.segments
        let metadata = try MetadataLocations(segments)
        let live = LiveSet(limit: segments.reduce(0) { $0 + $1.count })
        var visited = Set<ChunkID>()  // trees (a data chunk may have a tree's bytes: trees are tracked apart)
        func keep(_ id: ChunkID) throws {
            if live.insert(id) == nil {
                throw StoreError.refused("refusing to prune: the snapshots reference more blobs than the index holds — run `shadowmover check`")
            }
        }
        func mark(_ tree: ChunkID) throws {
            guard visited.insert(tree).inserted else { return }
            try keep(tree)
            let t: Tree
            do { t = try store.loadTree(tree, at: metadata.location(of: tree)) } catch {
                throw StoreError.refused("refusing to prune: \(error) — run `shadowmover check`")
            }
            for node in t.nodes {
                for id in node.content ?? [] { try keep(id) }
                for list in node.contentLists ?? [] {  // one list (16,384 ids) in memory at a time
                    try keep(list)
                    let ids: [ChunkID]
                    do { ids = try store.loadContentList(list, at: metadata.location(of: list)) } catch {
                        throw StoreError.refused("refusing to prune: \(error) — run `shadowmover check`")
                    }
                    for id in ids { try keep(id) }
                }
                if let sub = node.subtree { try mark(sub) }
            }
        }
        for (_, record) in records { try mark(record.tree) }
        visited = []
        live.sort()
        report.liveBlobs = live.count

        // Where each live blob is (the entry a lookup finds), by one merge pass over the segments:
        // its pack's number, and the live bytes of each pack.
        var packNumbers: [ChunkID: UInt32] = [:]
        var liveBytes: [UInt64] = []
        var packOf = [UInt32](repeating: 0, count: live.count)
        var next = 0
        var lastMatched: LiveSet.Key?
        let merge = try SegmentMerge(segments)
        while let (id, s, entry) = try merge.next() {
            let key = LiveSet.Key(id)
            if key == lastMatched {
                throw StoreError.refused("refusing to prune: blobs \(id) and another share their first 128 bits, which prune tells blobs apart by — please report this")
            }
            guard next < live.count else { continue }
            if live[next] < key { break }  // a live id no segment has
            guard live[next] == key else { continue }
            guard let location = segments[s].location(of: entry) else {
                throw StoreError.refused("refusing to prune: index segment \(segments[s].name) has a malformed entry for \(id) — run `shadowmover repair index`")
            }
            let number = packNumbers[location.pack] ?? {
                packNumbers[location.pack] = UInt32(liveBytes.count)
                liveBytes.append(0)
                return UInt32(liveBytes.count - 1)
            }()
            packOf[next] = number
            liveBytes[Int(number)] += UInt64(location.entry.storedLength)
            lastMatched = key
            next += 1
        }
        if next < live.count {
            throw StoreError.refused("refusing to prune: blob \(live[next].hex) is referenced but not in the index — run `shadowmover check`")
        }
        // Sweep: packs with nothing live go, packs with too much dead are repacked.
        var delete: [ChunkID] = []
        var repack: [ChunkID] = []
        let packs = try store.packIDs()
        report.packs = packs.count
        for pack in packs {
            let used = packNumbers[pack].map { liveBytes[Int($0)] } ?? 0
            let entries: [BlobEntry]
            do { entries = try store.readPackTrailer(pack) } catch {
                if used == 0 { delete.append(pack); continue }  // damaged and unused: just remove
                throw StoreError.refused("refusing to prune: \(error) — run `shadowmover check`")
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

        // Repack: copy live blobs as stored (no recompression) into new packs. A blob is copied from
        // the pack the index points to, once.
        let meter = ProgressMeter(action: "prune")
        meter.found(bytes: repack.reduce(0) { $0 + (packNumbers[$1].map { liveBytes[Int($0)] } ?? 0) }, files: delete.count + repack.count)
        meter.totalKnown()
        meter.start(progress)
        defer { meter.stop() }
        if !repack.isEmpty {
            let writer = store.makePackWriter(lean: true)
            defer { writer.cancel() }
            var scratch: [UInt8] = []
            for pack in repack {
                let number = packNumbers[pack]!
                let entries = try store.readPackTrailer(pack)
                for e in entries {
                    guard let i = live.index(of: e.id), packOf[i] == number else { continue }
                    packOf[i] = .max  // copied
                    let n = Int(e.storedLength)
                    if scratch.count < n { scratch = [UInt8](repeating: 0, count: n) }
                    let got = try scratch.withUnsafeMutableBytes { try store.readPack(pack, at: Int(e.offset), into: UnsafeMutableRawBufferPointer(rebasing: $0[..<n])) }
                    guard got == n else { throw StoreError.damagedPack(pack: pack.hex, reason: "truncated") }
                    // Copied as compressed; in an encrypted store opened (authenticated) and sealed
                    // again under the new pack's key.
                    let buffer = try writer.checkout(room: n)
                    try scratch.withUnsafeBytes { stored in
                        try store.cipher.openBlob(UnsafeRawBufferPointer(rebasing: stored[..<n]), pack: pack, entry: e) { plain in
                            buffer.free.copyMemory(from: plain)
                            buffer.append(id: e.id, type: e.type, codec: e.codec, storedLength: plain.count, rawLength: Int(e.rawLength))
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
        packOf = []

        // The new index: the newest entry of every live blob (repacked ones now point to their new
        // packs), streamed from the segments. Then old segments go, then packs.
        let current = store.index.segments
        var written: (name: String, count: Int)?
        _ = try store.writeSegment { directory in
            written = try IndexSegment.writeMerged(current, into: directory, keep: live.ascendingFilter)
            return written?.name
        }
        guard written?.count ?? 0 == live.count else {
            throw StoreError.refused("prune stopped: the new index holds \(written?.count ?? 0) of \(live.count) live blobs; nothing was deleted")
        }
        let name = written?.name
        let old = current.map(\.name)
        CrashPoint.step()
        for segment in old where segment != name {
            try store.backend.delete(ObjectKey.segment(segment))
            CrashPoint.step()
        }
        for (i, pack) in (delete + repack).enumerated() {
            try store.deletePack(pack)
            CrashPoint.step()
            if i < delete.count { meter.finishedFile() }  // a repacked one counted when it was copied
        }
        report.packsDeleted = delete.count
        let elapsed = ContinuousClock.now - clock
        report.durationSeconds = elapsed.seconds
        return report
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
            let pack = packNumbers[l.pack] ?? {
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
