import ChunkStore
import Chunking
import Compression
import Foundation

/// One worker's stage for new content: cut → hash → dedup → compress → pack (DESIGN.md §1). It owns its
/// read buffer and compressor, so nothing is allocated per chunk; a chunk the index already knows is
/// not compressed or written.
///
/// Not thread-safe: one per worker thread (`@unchecked Sendable` only to hand it to that thread).
final class ChunkSaver: @unchecked Sendable {
    let store: Store
    let packs: PackWriter
    let stream: ChunkStream
    let compressor: Compressor
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

    /// Linux's O_NOATIME (the same value on every architecture Swift supports); Glibc's module hides it
    /// behind _GNU_SOURCE. Reading with it keeps a backup from touching every file's atime.
    static let openNoAtime: Int32 = 0o1000000

    /// Size of each read(2): large enough that syscalls cost nothing next to hashing.
    static let readSize = 4 << 20

    init(store: Store, packs: PackWriter, codec: Codec) {
        self.store = store
        self.packs = packs
        self.stream = ChunkStream(chunker: store.chunker, capacity: 2 * store.chunker.parameters.maxSize + Self.readSize)
        self.compressor = Compressor(codec: codec)
    }

    /// Reads the file at `path` to its end and stores its chunks.
    /// - Returns: the chunk ids in order and the number of bytes read.
    func saveFile(_ path: PathBytes) throws -> (content: [ChunkID], size: UInt64) {
        var fd = path.withCString { open($0, O_RDONLY | O_CLOEXEC | Self.openNoAtime | O_NOFOLLOW) }
        if fd < 0 && errno == EPERM {  // O_NOATIME needs ownership; fall back without it
            fd = path.withCString { open($0, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        }
        if fd < 0 { throw FileSystem.Failure(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)

        stream.reset()
        var content: [ChunkID] = []
        var ended = false
        var size: UInt64 = 0
        while true {
            while !ended && !stream.canCut {
                let n = try stream.fill { free in
                    let want = min(free.count, Self.readSize)
                    while true {
                        let n = read(fd, free.baseAddress!, want)
                        if n >= 0 { return n }
                        if errno != EINTR { throw FileSystem.Failure(path: path, operation: "read", code: errno) }
                    }
                }
                if n == 0 { ended = true }
                size += UInt64(n)
            }
            guard let chunk = stream.nextChunk() else { break }
            content.append(try save(chunk, type: .data))
        }
        stats.bytesRead += size
        return (content, size)
    }

    /// Stores one blob unless the store already has it, and returns its id.
    func save(_ raw: UnsafeRawBufferPointer, type: BlobType) throws -> ChunkID {
        let id = ChunkID(hashing: raw)
        if type == .data { stats.chunks += 1 }
        guard store.index.claim(id) else { return id }
        let (kind, bytes) = compressor.compress(raw)
        try packs.add(id: id, type: type, codec: kind, stored: bytes, rawLength: raw.count)
        if type == .data {
            stats.chunksNew += 1
            stats.bytesAdded += UInt64(raw.count)
            stats.bytesStored += UInt64(bytes.count)
        } else {
            stats.treeBytesStored += UInt64(bytes.count)
        }
        return id
    }

    /// Encodes and stores a tree.
    func save(_ tree: Tree) throws -> ChunkID {
        let bytes = try tree.encoded()
        return try bytes.withUnsafeBytes { try save($0, type: .tree) }
    }
}
