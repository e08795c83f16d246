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
        let id = store.cipher.blobID(raw)
        if type == .data { stats.chunks += 1 }
        guard store.index.claim(id) else { return id }
        let bound = Compressor.bound(raw.count) + store.cipher.blobOverhead
        if let b = buffer, b.free.count < bound {
            buffer = nil
            try packs.checkin(b)
        }
        let target = try buffer ?? packs.checkout(room: bound)
        buffer = target
        let (kind, compressed) = compressor.compress(raw, into: target.free)
        let count = target.append(id: id, type: type, codec: kind, storedLength: compressed, rawLength: raw.count)
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

/// Reads files and cuts them into chunks. Small and medium files are read and cut by the worker that
/// took them, chunk by chunk into its `ChunkSaver`. A large file is cut by that worker alone (so its
/// cut points are exactly those of sequential chunking), but its chunks are handed in batches to every
/// worker for hashing and compression, so one huge file still keeps all cores busy.
final class FileReader: @unchecked Sendable {  // one per worker thread
    let stream: ChunkStream
    let saver: ChunkSaver
    let lanes: BackupLanes
    /// Files at least this large are split into batches for all workers.
    static let largeFileThreshold: Int64 = 32 << 20
    /// Bytes per read(2), and per batch for large files: big enough that system calls and batch
    /// hand-offs cost nothing next to hashing, small enough to keep memory low.
    static let readSize = 2 << 20
    /// Linux's O_NOATIME (the same value on every architecture Swift supports); Glibc's module hides
    /// it behind _GNU_SOURCE. Reading with it keeps a backup from touching every file's atime.
    static let openNoAtime: Int32 = 0o1000000

    init(saver: ChunkSaver, lanes: BackupLanes) {
        self.saver = saver
        self.lanes = lanes
        self.stream = ChunkStream(chunker: saver.store.chunker, capacity: saver.store.chunker.parameters.maxSize + Self.readSize)
    }

    static func open(_ path: PathBytes) throws -> Int32 {
        var fd = path.withCString { Glibc.open($0, O_RDONLY | O_CLOEXEC | openNoAtime | O_NOFOLLOW) }
        if fd < 0 && errno == EPERM {  // O_NOATIME needs ownership; fall back without it
            fd = path.withCString { Glibc.open($0, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        }
        if fd < 0 { throw FileSystem.Failure(path: path, operation: "open", code: errno) }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        return fd
    }

    /// Reads the file at `path` to its end and stores its chunks.
    /// - Returns: the chunk ids in order (or, for a large file, its content lists) and the bytes read.
    func saveFile(_ path: PathBytes, expectedSize: Int64) throws -> (content: SavedContent, size: UInt64) {
        let fd = try Self.open(path)
        defer { close(fd) }
        if expectedSize >= Self.largeFileThreshold && lanes.workers > 1 {
            return try saveLarge(fd: fd, path: path)
        }
        stream.reset()
        var content: [ChunkID] = []
        var ended = false
        var size: UInt64 = 0
        while true {
            while !ended && !stream.canCut {
                let n = try stream.fill { free in try self.read(fd, into: free, path: path) }
                if n == 0 { ended = true }
                size += UInt64(n)
            }
            guard let chunk = stream.nextChunk() else { break }
            content.append(try saver.save(chunk, type: .data))
        }
        saver.stats.bytesRead += size
        return (.chunks(content), size)
    }

    func read(_ fd: Int32, into free: UnsafeMutableRawBufferPointer, path: PathBytes) throws -> Int {
        let want = min(free.count, Self.readSize)
        while true {
            let n = Glibc.read(fd, free.baseAddress!, want)
            if n >= 0 {
                lanes.progress.done(n)
                return n
            }
            if errno != EINTR { throw FileSystem.Failure(path: path, operation: "read", code: errno) }
        }
    }

    /// A large file: this thread reads and cuts; batches of chunks go to all workers.
    private func saveLarge(fd: Int32, path: PathBytes) throws -> (content: SavedContent, size: UInt64) {
        let maxSize = saver.store.chunker.parameters.maxSize
        let job = LargeFile(lanes: lanes, bufferBytes: maxSize + 2 * Self.readSize)
        defer { job.abandon(lanes, saver: saver) }
        var size: UInt64 = 0
        var ended = false
        var previous: (buffer: UnsafeMutableRawBufferPointer, tail: Range<Int>)?
        while !ended {
            let buffer = try job.takeBuffer(helping: lanes, saver: saver)
            var filled = 0
            if let p = previous {
                // The uncut tail of the last buffer starts this one (at most maxSize bytes).
                buffer.baseAddress!.copyMemory(from: p.buffer.baseAddress! + p.tail.lowerBound, byteCount: p.tail.count)
                filled = p.tail.count
                job.release(p.buffer, batch: false)
                previous = nil
            }
            while !ended && filled < maxSize + Self.readSize {
                let n = try read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]), path: path)
                if n == 0 { ended = true }
                filled += n
                size += UInt64(n)
            }
            // Cut every chunk that has maxSize bytes after its start (or all, at the end): the cut
            // points are exactly those of sequential chunking.
            var position = 0
            var chunks: [(offset: Int, length: Int)] = []
            while position < filled && (ended || filled - position >= maxSize) {
                let length = saver.store.chunker.cut(UnsafeRawBufferPointer(rebasing: buffer[position..<filled]))
                chunks.append((position, length))
                position += length
            }
            let batch = ChunkBatch(job: job, buffer: buffer, chunks: chunks, firstIndex: job.reserve(chunks.count, in: buffer))
            if !lanes.lanes.tryPush(batch: batch) { try job.run(batch, saver) }
            if position < filled {
                previous = (buffer, position..<filled)
            } else {
                job.release(buffer, batch: false)
            }
        }
        if let p = previous { job.release(p.buffer, batch: false) }
        try job.waitForBatches(helping: lanes, saver: saver)
        saver.stats.bytesRead += size
        return (try job.content(saver: saver), size)
    }
}

/// The queues of one backup, its worker count, and the read buffers large files share (kept for the
/// whole backup: allocating and freeing 16 MiB blocks per file fragments the heap).
final class BackupLanes: @unchecked Sendable {
    let lanes: WorkLanes<Backup.FileJob, ChunkBatch>
    let workers: Int
    private let lock = NSLock()
    private var pool: [UnsafeMutableRawBufferPointer] = []
    private var allocated: [UnsafeMutableRawBufferPointer] = []

    let progress: ProgressMeter

    init(workers: Int, progress: ProgressMeter) {
        self.workers = workers
        self.progress = progress
        lanes = WorkLanes(fileCapacity: 4 * workers, batchCapacity: 2 * workers)
    }

    deinit { for b in allocated { b.deallocate() } }

    /// At most this many large-file read buffers exist at once, whatever the number of large files:
    /// memory stays flat. A reader that finds none free hashes batches until one is.
    var bufferLimit: Int { workers + 1 }

    func takeBuffer(bytes: Int) -> UnsafeMutableRawBufferPointer? {
        lock.withLock {
            if let i = pool.firstIndex(where: { $0.count == bytes }) { return pool.remove(at: i) }
            guard allocated.count < bufferLimit else { return nil }
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 64)
            allocated.append(b)
            return b
        }
    }

    func giveBack(_ buffers: [UnsafeMutableRawBufferPointer]) { lock.withLock { pool.append(contentsOf: buffers) } }
}

/// What reading a file gave: its chunk ids, or (a large file, whose ids were stored as they arrived)
/// the ids of its content lists.
enum SavedContent {
    case chunks([ChunkID])
    case lists([ChunkID])
}
