import Foundation

/// Read-only views of a store for `shadowmover inspect`: statistics, where a chunk is used, what a
/// pack holds, what changed between snapshots.
public struct Inspector {
    /// The store inspected.
    public let store: Store

    /// An inspector of `store`.
    public init(store: Store) { self.store = store }

    /// Calls `visit` for every node of a snapshot with its full path; trees are visited once per call.
    public func walk(_ root: ChunkID, visit: (Node, String) throws -> Void) throws {
        func go(_ id: ChunkID, _ path: String) throws {
            for node in try store.loadTree(id).nodes {
                let full = path + "/" + node.name
                try visit(node, full)
                if let sub = node.subtree { try go(sub, full) }
            }
        }
        try go(root, "")
    }

    /// What a store holds and how well it deduplicates and compresses (`stats`).
    public struct Stats: Codable, Sendable {
        /// Snapshots counted.
        public var snapshots = 0
        /// Files in them (a file in two snapshots counts twice).
        public var files = 0
        /// Sum of the sizes of the files in the snapshots (what a full restore of each would write).
        public var logicalBytes: UInt64 = 0
        /// Distinct data chunks they reference.
        public var uniqueChunks = 0
        /// Raw and stored bytes of the unique chunks.
        public var uniqueRawBytes: UInt64 = 0
        /// Bytes those chunks take in packs.
        public var storedBytes: UInt64 = 0
        /// Logical bytes over unique raw bytes.
        public var dedupRatio: Double = 0
        /// Chunks, raw and stored bytes by codec.
        public var compression: [CodecStats] = []
        /// Chunk count per power-of-two size bucket (upper bound in bytes).
        public var histogram: [Bucket] = []
        /// Packs in the store.
        public var packs = 0
        /// Share of the referenced packs' bytes used by these snapshots.
        public var packFill: Double = 0

        /// One codec's share of the store.
        public struct CodecStats: Codable, Sendable {
            /// The codec's name.
            public var codec: String
            /// Chunks stored with it.
            public var chunks: Int
            /// Their raw bytes.
            public var rawBytes: UInt64
            /// Their stored bytes.
            public var storedBytes: UInt64
            /// Raw over stored.
            public var ratio: Double
        }
        /// A bar of the chunk-size histogram.
        public struct Bucket: Codable, Sendable {
            /// Chunks of at most this many bytes (and more than the bar before).
            public var upTo: Int
            /// How many.
            public var chunks: Int
        }
    }

    /// Statistics over `snapshots` (every tree walked once).
    public func stats(snapshots: [(id: String, record: SnapshotRecord)]) throws -> Stats {
        var s = Stats()
        s.snapshots = snapshots.count
        var seen = Set<ChunkID>()
        var perCodec: [String: Stats.CodecStats] = [:]
        var buckets: [Int: Int] = [:]
        var packBytesUsed: [ChunkID: UInt64] = [:]
        for (_, record) in snapshots {
            try walk(record.tree) { node, _ in
                guard node.kind == .file else { return }
                s.files += 1
                s.logicalBytes += node.size
                for id in try store.content(of: node) where seen.insert(id).inserted {
                    guard let l = store.index.lookup(id) else { throw StoreError.missingBlob(id) }
                    let raw = UInt64(l.entry.rawLength), stored = UInt64(l.entry.storedLength)
                    s.uniqueChunks += 1
                    s.uniqueRawBytes += raw
                    s.storedBytes += stored
                    let name = "\(l.entry.codec)"
                    var c = perCodec[name] ?? .init(codec: name, chunks: 0, rawBytes: 0, storedBytes: 0, ratio: 0)
                    c.chunks += 1
                    c.rawBytes += raw
                    c.storedBytes += stored
                    perCodec[name] = c
                    var upTo = 1
                    while upTo < Int(raw) { upTo <<= 1 }
                    buckets[upTo, default: 0] += 1
                    packBytesUsed[l.pack, default: 0] += stored
                }
            }
        }
        s.dedupRatio = s.uniqueRawBytes == 0 ? 0 : Double(s.logicalBytes) / Double(s.uniqueRawBytes)
        s.compression = perCodec.values.map { c in
            var c = c
            c.ratio = c.storedBytes == 0 ? 0 : Double(c.rawBytes) / Double(c.storedBytes)
            return c
        }.sorted { $0.codec < $1.codec }
        s.histogram = buckets.keys.sorted().map { Stats.Bucket(upTo: $0, chunks: buckets[$0]!) }
        s.packs = packBytesUsed.count
        var total: UInt64 = 0
        for pack in packBytesUsed.keys {
            total += (try? store.readPackTrailer(pack))?.reduce(UInt64(0)) { $0 + UInt64($1.storedLength) } ?? 0
        }
        s.packFill = total == 0 ? 0 : Double(packBytesUsed.values.reduce(0, +)) / Double(total)
        return s
    }

    /// Every "snapshot:path" whose content (or tree) includes `id`.
    public func references(to id: ChunkID) throws -> [String] {
        var out: [String] = []
        for (sid, record) in try store.snapshots().records {
            if record.tree == id { out.append("\(sid.prefix(8)):/") }
            try walk(record.tree) { node, path in
                if try node.metadataBlobs.contains(id) || store.content(of: node).contains(id) { out.append("\(sid.prefix(8)):\(path)") }
            }
        }
        return out
    }

    /// One blob of a pack, as its trailer lists it.
    public struct PackBlob: Codable, Sendable {
        /// The blob's id.
        public var id: String
        /// data, tree or content list.
        public var type: String
        /// The codec it is stored with.
        public var codec: String
        /// Where it starts in the pack.
        public var offset: UInt32
        /// Its length in the pack.
        public var storedLength: UInt32
        /// Its length decompressed.
        public var rawLength: UInt32
        /// Referenced by a snapshot, and where the index points for it.
        public var referenced: Bool
    }

    /// A pack's blobs and whether a snapshot references each (where the index points to this pack).
    public func pack(_ pack: ChunkID) throws -> [PackBlob] {
        var used = Set<ChunkID>()
        for (_, record) in try store.snapshots().records {
            used.insert(record.tree)
            try walk(record.tree) { node, _ in
                for id in try store.content(of: node) + node.metadataBlobs { used.insert(id) }
            }
        }
        return try store.readPackTrailer(pack).map { e in
            PackBlob(
                id: e.id.hex, type: e.type.name, codec: "\(e.codec)", offset: e.offset, storedLength: e.storedLength,
                rawLength: e.rawLength, referenced: used.contains(e.id) && store.index.lookup(e.id)?.pack == pack)
        }
    }

    /// What changed between two snapshots, by path.
    public struct Diff: Codable, Sendable {
        /// Paths only in the second.
        public var added: [String] = []
        /// Paths only in the first.
        public var removed: [String] = []
        /// Paths in both whose content or metadata differ.
        public var changed: [String] = []
        /// Bytes of chunks the second snapshot's files use that the first's do not.
        public var bytesNew: UInt64 = 0
    }

    /// The paths added, removed and changed from `a` to `b`.
    public func diff(_ a: SnapshotRecord, _ b: SnapshotRecord) throws -> Diff {
        var first: [String: Node] = [:]
        var chunksA = Set<ChunkID>()
        try walk(a.tree) { node, path in
            first[path] = node
            for id in try store.content(of: node) { chunksA.insert(id) }
        }
        var d = Diff()
        var counted = Set<ChunkID>()
        try walk(b.tree) { node, path in
            for id in try store.content(of: node) where !chunksA.contains(id) && counted.insert(id).inserted {
                d.bytesNew += UInt64(store.index.lookup(id)?.entry.rawLength ?? 0)
            }
            guard let old = first.removeValue(forKey: path) else {
                d.added.append(path)
                return
            }
            if old.kind != node.kind || old.content != node.content || old.contentLists != node.contentLists || old.mode != node.mode || old.uid != node.uid
                || old.gid != node.gid || old.mtime != node.mtime || old.linkTarget != node.linkTarget || old.xattrs != node.xattrs
                || (node.kind == .file && old.size != node.size)
            {
                if node.kind != .directory || old.kind != .directory || old.mode != node.mode || old.uid != node.uid || old.gid != node.gid {
                    d.changed.append(path)
                }
            }
        }
        d.removed = first.keys.sorted()
        d.added.sort()
        d.changed.sort()
        return d
    }
}
