import ChunkStore
import Chunking
import Compression
import Foundation

/// One worker's hash → dedup → compress → pack stage (DESIGN.md §1). It owns a compressor and a pack
/// buffer it compresses straight into, so nothing is allocated or copied per chunk; a chunk the index
/// already knows is neither compressed nor written.
///
/// Not thread-safe: one per worker thread (`@unchecked Sendable` only to hand it to that thread).
final class ChunkSaver: @unchecked Sendable {
    let store: Store
    let packs: PackWriter
    let compressor: Compressor
    private var buffer: PackBuffer?
    var stats = SaverStats()

    struct SaverStats {
        var bytesRead: UInt64 = 0
        var chunks = 0
        var chunksNew = 0
        var bytesAdded: UInt64 = 0
        var bytesStored: UInt64 = 0
        var treeBytesStored: UInt64 = 0

        mutating func merge(_ o: SaverStats) {
            bytesRead += o.bytesRead
            chunks += o.chunks
            chunksNew += o.chunksNew
            bytesAdded += o.bytesAdded
            bytesStored += o.bytesStored
            treeBytesStored += o.treeBytesStored
        }
    }

    init(store: Store, packs: PackWriter, codec: Codec) {
        self.store = store
        self.packs = packs
        self.compressor = Compressor(codec: codec)
    }

    /// Stores one blob unless the store already has it, and returns its id.
    func save(_ raw: UnsafeRawBufferPointer, type: BlobType) throws -> ChunkID {
        try save(raw, id: store.cipher.blobID(raw), type: type)
    }

    /// Stores data chunks, in order, each unless the store already has it, hashing them two at a time
    /// (`BlobHash`: two together cost about two thirds of two apart). - Returns: their ids.
    func saveData(_ chunks: [UnsafeRawBufferPointer]) throws -> [ChunkID] {
        try zip(chunks, store.cipher.blobIDs(chunks)).map { try save($0, id: $1, type: .data) }
    }

    /// Stores blob `raw`, whose id is `id`, unless the store already has it. - Returns: `id`.
    private func save(_ raw: UnsafeRawBufferPointer, id: ChunkID, type: BlobType) throws -> ChunkID {
        if type == .data { stats.chunks += 1 }
        guard store.index.claim(id) else { return id }
        let bound = Compressor.bound(raw.count) + store.cipher.blobOverhead
        if let b = buffer, b.freeCount < bound {
            buffer = nil
            try packs.checkin(b)
        }
        let target = try buffer ?? packs.checkout(room: bound)
        buffer = target
        let count = target.append(id: id, type: type, rawLength: raw.count) { free in compressor.compress(raw, into: free) }
        if type == .data {
            stats.chunksNew += 1
            stats.bytesAdded += UInt64(raw.count)
            stats.bytesStored += UInt64(count)
        } else {
            stats.treeBytesStored += UInt64(count)
        }
        return id
    }

    /// Stores one content list (up to `ContentList.idsPerBlob` consecutive chunk ids of a file).
    func saveList(_ ids: ArraySlice<ChunkID>) throws -> ChunkID {
        try ContentList.encode(ids).withUnsafeBytes { try save($0, type: .contentList) }
    }

    /// Puts a file's content into its node: chunk ids inline, or past `ContentList.inlineLimit` in
    /// content-list blobs, so that the tree stays small.
    func attach(_ content: SavedContent, to node: inout Node) throws {
        switch content {
        case .chunks(let ids) where ids.count <= ContentList.inlineLimit:
            node.content = ids
            node.contentLists = nil
        case .chunks(let ids):
            node.content = nil
            node.contentLists = try stride(from: 0, to: ids.count, by: ContentList.idsPerBlob).map {
                try saveList(ids[$0..<min($0 + ContentList.idsPerBlob, ids.count)])
            }
        case .lists(let lists):
            node.content = nil
            node.contentLists = lists
        }
    }

    /// Encodes and stores a tree.
    func save(_ tree: Tree) throws -> ChunkID {
        let bytes = try tree.encoded()
        return try bytes.withUnsafeBytes { try save($0, type: .tree) }
    }

    /// Hands the pack buffer back (at the end of the worker's work).
    func finish() throws {
        if let b = buffer {
            buffer = nil
            try packs.checkin(b)
        }
    }
}

/// What reading a file gave: its chunk ids, or (a large file, whose ids were stored as they arrived)
/// the ids of its content lists.
enum SavedContent {
    case chunks([ChunkID])
    case lists([ChunkID])
}
