import ChunkStore
import Chunking
import Foundation

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
        var ready: [UnsafeRawBufferPointer] = []
        var ended = false
        var size: UInt64 = 0
        while true {
            // Fill the buffer, then take every chunk whose end is certain: they are hashed together,
            // and stay valid until the next fill.
            while !ended && stream.freeSpace >= Self.readSize {
                let n = try stream.fill { free in try self.read(fd, into: free, path: path) }
                if n == 0 { ended = true }
                size += UInt64(n)
            }
            while let chunk = stream.nextChunk() { ready.append(chunk) }
            content += try saver.saveData(ready)
            ready.removeAll(keepingCapacity: true)
            if ended { break }
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
        let chunker = saver.store.chunker
        let maxSize = chunker.parameters.maxSize
        let job = LargeFile(lanes: lanes, bufferBytes: maxSize + 2 * Self.readSize)
        defer { job.abandon(lanes, saver: saver) }
        var size: UInt64 = 0
        var ended = false
        var previous: (buffer: UnsafeMutableRawBufferPointer, tail: Range<Int>)?
        var scan = chunker.start
        while !ended {
            let buffer = try job.takeBuffer(helping: lanes, saver: saver)
            var filled = 0
            if let p = previous {
                // The uncut tail of the last buffer starts this one (less than maxSize bytes).
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
            // Cut every chunk whose end is certain (the search for the uncut tail's end resumes in
            // the next buffer): the cut points are exactly those of sequential chunking.
            var position = 0
            var chunks: [(offset: Int, length: Int)] = []
            while position < filled,
                let length = chunker.cut(UnsafeRawBufferPointer(rebasing: buffer[position..<filled]), resuming: &scan, final: ended)
            {
                chunks.append((position, length))
                position += length
                scan = chunker.start
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
