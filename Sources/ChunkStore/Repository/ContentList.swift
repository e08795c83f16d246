/// A large file's chunk ids, kept out of its tree (docs/FORMAT.md, "Content lists").
///
/// A file of more than `inlineLimit` chunks has its ids stored in blobs of type `contentList`, each
/// the raw 32-byte ids of up to `idsPerBlob` consecutive chunks (512 KiB), and its node lists those
/// blobs. A tree so stays small whatever its files' sizes — a 1 TiB image in 64 KiB chunks would
/// otherwise be a 1 GiB tree — and readers that walk trees (prune, check) hold one list at a time.
/// Lists are content-addressed like everything else: an unchanged file's lists dedup.
public enum ContentList {
    /// Files with at most this many chunks keep their ids in the tree.
    public static let inlineLimit = 4096
    /// Chunk ids per content-list blob.
    public static let idsPerBlob = 16_384

    /// The bytes of one list blob.
    public static func encode(_ ids: ArraySlice<ChunkID>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: ids.count * ChunkID.byteCount)
        out.withUnsafeMutableBytes { b in
            for (i, id) in ids.enumerated() { id.store(to: b.baseAddress! + i * ChunkID.byteCount) }
        }
        return out
    }

    /// The ids in one list blob's bytes.
    public static func decode(_ bytes: [UInt8], id: ChunkID, pack: ChunkID) throws -> [ChunkID] {
        guard bytes.count % ChunkID.byteCount == 0, bytes.count <= idsPerBlob * ChunkID.byteCount else {
            throw StoreError.damagedBlob(id: id, pack: pack.hex, reason: "not a content list: \(bytes.count) bytes")
        }
        return bytes.withUnsafeBytes { b in
            (0..<bytes.count / ChunkID.byteCount).map { ChunkID(bytes: UnsafeRawBufferPointer(rebasing: b[$0 * 32..<$0 * 32 + 32])) }
        }
    }
}

extension Store {
    /// The chunk ids of one content-list blob (from `location` when the caller knows where it is).
    public func loadContentList(_ id: ChunkID, at known: BlobLocation? = nil) throws -> [ChunkID] {
        guard let location = known ?? index.lookup(id) else { throw StoreError.missingBlob(id) }
        return try ContentList.decode(try loadBlob(id, at: location, expecting: .contentList), id: id, pack: location.pack)
    }

    /// A file's chunk ids in order: inline, or read from its content lists.
    public func content(of node: Node) throws -> [ChunkID] {
        guard let lists = node.contentLists else { return node.content ?? [] }
        var ids: [ChunkID] = []
        ids.reserveCapacity(lists.count * ContentList.idsPerBlob)
        for list in lists { ids += try loadContentList(list) }
        return ids
    }
}

extension Node {
    /// The blobs this node references directly besides data chunks: its subtree and content lists.
    public var metadataBlobs: [ChunkID] { (subtree.map { [$0] } ?? []) + (contentLists ?? []) }
}

extension Store {
    /// Checks that a file's chunks hold exactly its size (docs/FORMAT.md, "Validity rules"): a node
    /// that declares more would restore as a sparse file of that size, one that declares less would
    /// cut its content. - Returns: why not, or nil when they agree, or when a chunk is not indexed or
    /// its entry is out of bounds (that is the blob's damage, reported as such when it is read).
    public func sizeMismatch(_ node: Node, content: [ChunkID]) -> String? {
        guard node.kind == .file else { return nil }
        var total: UInt64 = 0
        for id in content {
            guard let location = index.lookup(id), let length = try? checkBounds(location, expecting: .data) else { return nil }
            total += UInt64(length)
        }
        return total == node.size ? nil : "its size is \(node.size) bytes but its \(content.count) chunk(s) hold \(total)"
    }
}
