import Crypto
import Foundation

/// Removes data no snapshot references (`shadowmover prune`): marks every blob reachable from the
/// snapshots, deletes packs with nothing live, repacks packs whose unused share exceeds `maxUnused`,
/// and rewrites the index.
///
/// Crash-safe at every step, because nothing is deleted before what replaces it is durable:
/// new packs → their index segment → the new full index segment → old segments deleted → old packs
/// deleted. A crash leaves at worst unreferenced packs or a redundant segment, which the next prune
/// removes. Memory: the set of live ids (tens of bytes per chunk), plus one pack being repacked.
public struct Pruner {
    public let store: Store
    /// Repack a pack when more than this share of its bytes is unused.
    public var maxUnused = 0.05

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
        public var durationSeconds = 0.0
    }

    public func run() throws -> Report {
        let clock = ContinuousClock.now
        let lock = try StoreLock.acquire(store, exclusive: true, purpose: "prune")
        defer { lock.release() }
        var report = Report()

        // Mark.
        let (records, damaged) = try store.snapshots()
        if let d = damaged.first { throw StoreError.refused("refusing to prune: \(d); the data it references would be deleted — run `shadowmover check`") }
        report.snapshots = records.count
        var live = Set<ChunkID>()
        var visited = Set<ChunkID>()
        func mark(_ tree: ChunkID) throws {
            guard visited.insert(tree).inserted else { return }
            live.insert(tree)
            let t: Tree
            do { t = try store.loadTree(tree) } catch {
                throw StoreError.refused("refusing to prune: \(error) — run `shadowmover check`")
            }
            for node in t.nodes {
                for id in node.content ?? [] { live.insert(id) }
                if let sub = node.subtree { try mark(sub) }
            }
        }
        for (_, record) in records { try mark(record.tree) }
        visited = []
        report.liveBlobs = live.count

        // Sweep: what is live in each pack (an id counts in the pack the index points to).
        var liveBytes: [ChunkID: UInt64] = [:]
        for id in live {
            guard let location = store.index.lookup(id) else {
                throw StoreError.refused("refusing to prune: blob \(id) is referenced but not in the index — run `shadowmover check`")
            }
            liveBytes[location.pack, default: 0] += UInt64(location.entry.storedLength)
        }
        var delete: [ChunkID] = []
        var repack: [(pack: ChunkID, entries: [BlobEntry])] = []
        let packs = try store.packIDs()
        report.packs = packs.count
        for pack in packs {
            let entries: [BlobEntry]
            do { entries = try store.readPackTrailer(pack) } catch {
                if liveBytes[pack] == nil { delete.append(pack); continue }  // damaged and unused: just remove
                throw StoreError.refused("refusing to prune: \(error) — run `shadowmover check`")
            }
            let total = entries.reduce(UInt64(0)) { $0 + UInt64($1.storedLength) }
            let used = liveBytes[pack] ?? 0
            if used == 0 {
                delete.append(pack)
                report.bytesFreed += total
            } else if total > 0, Double(total - used) / Double(total) > maxUnused {
                repack.append((pack, entries))
                report.bytesFreed += total - used
            }
        }

        // Repack: copy live blobs as stored (no recompression) into new packs.
        if !repack.isEmpty {
            let writer = store.makePackWriter()
            defer { writer.cancel() }
            var scratch: [UInt8] = []
            for (pack, entries) in repack {
                let fd = open(store.packPath(pack), O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw StoreError.io(path: store.packPath(pack), operation: "open", errno: errno) }
                defer { close(fd) }
                for e in entries where live.contains(e.id) && store.index.lookup(e.id)?.pack == pack {
                    let n = Int(e.storedLength)
                    if scratch.count < n { scratch = [UInt8](repeating: 0, count: n) }
                    let got = try scratch.withUnsafeMutableBytes { try FileIO.preadFully(fd: fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<n]), at: Int(e.offset), path: store.packPath(pack)) }
                    guard got == n else { throw StoreError.damagedPack(pack: pack.hex, reason: "truncated") }
                    let buffer = try writer.checkout(room: n)
                    scratch.withUnsafeBytes { buffer.free.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[..<n])) }
                    buffer.append(id: e.id, type: e.type, codec: e.codec, storedLength: n, rawLength: Int(e.rawLength))
                    try writer.checkin(buffer)
                    report.bytesRepacked += UInt64(n)
                }
            }
            try writer.commit()
            report.packsWritten = writer.packsWritten
            report.packsRepacked = repack.count
        }

        // The new index: every live blob where the index now finds it. Then old segments, then packs.
        let old = store.index.segments.map(\.name)
        let name = try writeFullIndex(live)
        CrashPoint.step()
        for segment in old where segment != name {
            unlink("\(store.path)/index/\(segment)")
            CrashPoint.step()
        }
        try FileIO.fsyncDirectory("\(store.path)/index")
        for pack in delete + repack.map(\.pack) {
            unlink(store.packPath(pack))
            CrashPoint.step()
        }
        report.packsDeleted = delete.count
        let elapsed = ContinuousClock.now - clock
        report.durationSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return report
    }

    /// Writes one segment with every live blob, streaming (memory: the sorted ids), named by its hash.
    private func writeFullIndex(_ live: Set<ChunkID>) throws -> String {
        let ids = live.sorted()
        var packNumbers: [ChunkID: UInt32] = [:]
        var packList: [ChunkID] = []
        for id in ids {
            let pack = store.index.lookup(id)!.pack
            if packNumbers[pack] == nil {
                packNumbers[pack] = UInt32(packList.count)
                packList.append(pack)
            }
        }
        let directory = "\(store.path)/index"
        let temp = "\(directory)/.tmp-prune-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        try FileIO.check(fd, temp, "create")
        var hasher = SHA256()
        var block = [UInt8]()
        block.reserveCapacity(1 << 20)
        func flush() throws {
            hasher.update(data: block)
            try block.withUnsafeBytes { try FileIO.writeAll(fd: fd, $0, path: temp) }
            block.removeAll(keepingCapacity: true)
        }
        do {
            block.append(contentsOf: IndexSegment.magic)
            block.appendLE32(UInt32(packList.count))
            block.appendLE32(UInt32(ids.count))
            for p in packList { block.append(p) }
            for id in ids {
                let l = store.index.lookup(id)!
                IndexSegment.appendEntry(l.entry, pack: packNumbers[l.pack]!, to: &block)
                if block.count >= 1 << 20 { try flush() }
            }
            try flush()
            try FileIO.check(fsync(fd), temp, "fsync")
            try FileIO.check(close(fd), temp, "close")
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        let name = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        if rename(temp, "\(directory)/\(name)") != 0 {
            unlink(temp)
            throw StoreError.io(path: "\(directory)/\(name)", operation: "rename into place", errno: errno)
        }
        try FileIO.fsyncDirectory(directory)
        return name
    }
}
