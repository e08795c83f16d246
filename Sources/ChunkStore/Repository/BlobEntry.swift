import Compression

/// What a blob holds.
public enum BlobType: UInt8, Sendable, Codable {
    /// A chunk of file content.
    case data = 0
    /// A directory listing (a `Tree`, JSON).
    case tree = 1
    /// Part of a large file's chunk list: chunk ids, 32 raw bytes each (`ContentList`).
    case contentList = 2

    /// The largest raw length a blob of this type may have (docs/FORMAT.md, "Validity rules"): a data
    /// chunk is at most the store's chunker maximum, a content list holds at most
    /// `ContentList.idsPerBlob` ids, a tree is at most `Tree.maximumEncodedLength`. A reader refuses a
    /// longer one as damage before allocating anything for it.
    public func maximumRawLength(chunkerMaximum: Int) -> Int {
        switch self {
        case .data: chunkerMaximum
        case .tree: Tree.maximumEncodedLength
        case .contentList: ContentList.idsPerBlob * ChunkID.byteCount
        }
    }

    /// The type as users read it: data, tree, content list.
    public var name: String {
        switch self {
        case .data: "data"
        case .tree: "tree"
        case .contentList: "content list"
        }
    }
}

/// Where a blob lives and how to decode it: one entry of a pack trailer or an index segment.
public struct BlobEntry: Sendable, Equatable {
    /// The blob's id.
    public var id: ChunkID
    /// What the blob holds.
    public var type: BlobType
    /// The codec it is stored with.
    public var codec: Codec.Kind
    /// Byte offset of the stored (compressed) bytes in the pack.
    public var offset: UInt32
    /// Its length in the pack (sealed: with its tag).
    public var storedLength: UInt32
    /// Its length decompressed.
    public var rawLength: UInt32

    /// An entry as a trailer or index segment lists it.
    public init(id: ChunkID, type: BlobType, codec: Codec.Kind, offset: UInt32, storedLength: UInt32, rawLength: UInt32) {
        self.id = id
        self.type = type
        self.codec = codec
        self.offset = offset
        self.storedLength = storedLength
        self.rawLength = rawLength
    }

    /// Appends where and how the blob is stored as both a pack trailer and an index segment write it
    /// after their own leading fields (docs/FORMAT.md): offset, stored and raw lengths (LE32), type,
    /// codec, two zero bytes.
    func appendPlacement(to out: inout [UInt8]) {
        out.appendLE32(offset)
        out.appendLE32(storedLength)
        out.appendLE32(rawLength)
        out.append(type.rawValue)
        out.append(codec.rawValue)
        out.append(0)
        out.append(0)
    }
}

/// A blob's entry together with the pack that holds it.
public struct BlobLocation: Sendable, Equatable {
    /// The pack that holds the blob.
    public var pack: ChunkID
    /// Where in it, and how it is stored.
    public var entry: BlobEntry
}
