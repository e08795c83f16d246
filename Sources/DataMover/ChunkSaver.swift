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
        let id = ChunkID(hashing: raw)
        if type == .data { stats.chunks += 1 }
        guard store.index.claim(id) else { return id }
        let bound = Compressor.bound(raw.count)
        if let b = buffer, b.free.count < bound {
            buffer = nil
            try packs.checkin(b)
        }
        let target = try buffer ?? packs.checkout(room: bound)
        buffer = target
        let (kind, count) = compressor.compress(raw, into: target.free)
        target.append(id: id, type: type, codec: kind, storedLength: count, rawLength: raw.count)
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
                lanes.progress.read(n)
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

    let progress: ProgressCounter

    init(workers: Int, progress: ProgressCounter) {
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

/// A run of chunks of a large file, in one of its read buffers, for any worker to hash and store.
struct ChunkBatch: @unchecked Sendable {
    let job: LargeFile
    let buffer: UnsafeMutableRawBufferPointer
    let chunks: [(offset: Int, length: Int)]
    let firstIndex: Int

    fileprivate func process(with saver: ChunkSaver) throws {
        var ids: [ChunkID] = []
        ids.reserveCapacity(chunks.count)
        for c in chunks {
            ids.append(try saver.save(UnsafeRawBufferPointer(rebasing: buffer[c.offset..<(c.offset + c.length)]), type: .data))
        }
        try job.set(firstIndex, ids, saver: saver)
    }
}

/// What reading a file gave: its chunk ids, or (a large file, whose ids were stored as they arrived)
/// the ids of its content lists.
enum SavedContent {
    case chunks([ChunkID])
    case lists([ChunkID])
}

/// One large file in flight: a few read buffers (reused, counted: the reader holds one until the next
/// has copied its tail; a batch holds one until hashed), the chunk ids as they arrive, and the first
/// error any worker hit.
///
/// Chunk ids are kept in slots of `ContentList.idsPerBlob`; a slot is stored as a content list as soon
/// as all its ids have arrived, so memory does not grow with the file (a 1 TiB image in 64 KiB chunks
/// would otherwise hold 512 MiB of ids). The lists are cut exactly where `attach` would cut them.
final class LargeFile: @unchecked Sendable {  // guarded by `condition`
    private let condition = NSCondition()
    private var free: [UnsafeMutableRawBufferPointer] = []
    private var all: [UnsafeMutableRawBufferPointer] = []
    private var users: [UnsafeMutableRawPointer: Int] = [:]
    private var slots: [Int: (ids: [ChunkID], filled: Int)] = [:]
    private var lists: [Int: ChunkID] = [:]
    private var total = 0
    private static let per = ContentList.idsPerBlob
    private static let placeholder = ChunkID(hashing: [UInt8]())
    private var outstanding = 0
    private var error: Error?
    let limit: Int
    let bufferBytes: Int
    let lanes: BackupLanes

    init(lanes: BackupLanes, bufferBytes: Int) {
        limit = lanes.workers + 1
        self.lanes = lanes
        self.bufferBytes = bufferBytes
    }

    deinit { lanes.giveBack(all) }

    /// A free buffer (held once, by the reader); while none is free, this thread hashes waiting batches.
    func takeBuffer(helping lanes: BackupLanes, saver: ChunkSaver) throws -> UnsafeMutableRawBufferPointer {
        while true {
            condition.lock()
            if let e = error {
                condition.unlock()
                throw e
            }
            var buffer = free.popLast()
            if buffer == nil && all.count < limit, let fresh = lanes.takeBuffer(bytes: bufferBytes) {
                buffer = fresh
                all.append(fresh)
            }
            if let buffer {
                users[buffer.baseAddress!] = 1
                condition.unlock()
                return buffer
            }
            condition.unlock()
            if let batch = lanes.lanes.popBatch(timeout: .milliseconds(2)) { try batch.job.run(batch, saver) }
        }
    }

    /// Adds a batch's claim on its buffer and room for its ids. - Returns: the index of its first chunk.
    func reserve(_ count: Int, in buffer: UnsafeMutableRawBufferPointer) -> Int {
        condition.withLock {
            users[buffer.baseAddress!, default: 0] += 1
            let first = total
            total += count
            var slot = first / Self.per
            while slot * Self.per < total {
                if slots[slot] == nil && lists[slot] == nil { slots[slot] = (Array(repeating: Self.placeholder, count: Self.per), 0) }
                slot += 1
            }
            outstanding += 1
            return first
        }
    }

    /// Hashes and stores a batch, then lets go of its buffer (also on failure).
    func run(_ batch: ChunkBatch, _ saver: ChunkSaver) throws {
        do {
            try batch.process(with: saver)
            release(batch.buffer, batch: true)
        } catch {
            fail(error)
            release(batch.buffer, batch: true)
            throw error
        }
    }

    func release(_ b: UnsafeMutableRawBufferPointer, batch: Bool) {
        condition.lock()
        let left = (users[b.baseAddress!] ?? 1) - 1
        users[b.baseAddress!] = left
        if left == 0 { free.append(b) }
        if batch { outstanding -= 1 }
        condition.broadcast()
        condition.unlock()
    }

    /// Records a batch's ids; stores every slot they complete as a content list.
    func set(_ first: Int, _ batchIDs: [ChunkID], saver: ChunkSaver) throws {
        var complete: [(slot: Int, ids: [ChunkID])] = []
        condition.withLock {
            var i = first
            while i < first + batchIDs.count {
                let slot = i / Self.per
                let end = min(first + batchIDs.count, (slot + 1) * Self.per)
                var entry = slots.removeValue(forKey: slot)!  // taken out and put back: no copy
                for j in i..<end { entry.ids[j - slot * Self.per] = batchIDs[j - first] }
                entry.filled += end - i
                if entry.filled == Self.per { complete.append((slot, entry.ids)) } else { slots[slot] = entry }
                i = end
            }
        }
        for c in complete {
            let id = try saver.saveList(c.ids[...])
            condition.withLock { lists[c.slot] = id }
        }
    }

    func fail(_ e: Error) { condition.withLock { if error == nil { error = e } } }

    /// Waits for every batch, hashing waiting batches meanwhile.
    func waitForBatches(helping lanes: BackupLanes, saver: ChunkSaver) throws {
        while true {
            condition.lock()
            if outstanding == 0 {
                let e = error
                condition.unlock()
                if let e { throw e }
                return
            }
            condition.unlock()
            if let batch = lanes.lanes.popBatch(timeout: .milliseconds(2)) { try? batch.job.run(batch, saver) }
        }
    }

    /// On failure, waits until no worker still uses the buffers (they go back to the pool with this
    /// object). Meanwhile it hashes waiting batches (of any file): the other workers may have finished
    /// already, and a batch nobody takes would keep this wait from ending.
    func abandon(_ lanes: BackupLanes, saver: ChunkSaver) {
        while condition.withLock({ outstanding > 0 }) {
            if let batch = lanes.lanes.popBatch(timeout: .milliseconds(2)) { try? batch.job.run(batch, saver) }
        }
    }

    /// The file's content once every batch is done: its ids inline when few, else its content lists
    /// (the last, partial one stored now).
    func content(saver: ChunkSaver) throws -> SavedContent {
        condition.lock()
        let rest = slots, count = total
        var lists = self.lists
        condition.unlock()
        if count <= ContentList.inlineLimit {
            guard let first = rest[0] else { return .chunks([]) }
            return .chunks(Array(first.ids[..<count]))
        }
        for (slot, entry) in rest {
            let end = min(Self.per, count - slot * Self.per)
            lists[slot] = try saver.saveList(entry.ids[..<end])
        }
        return .lists((0..<lists.count).map { lists[$0]! })
    }
}
