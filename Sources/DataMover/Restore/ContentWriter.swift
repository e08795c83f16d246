import ChunkStore
import Compression
import Foundation

/// Writes restored file content. Chunks are decompressed straight into a page-aligned staging buffer
/// laid out like the file (memory offset ≡ file offset mod 4096) and written with O_DIRECT in whole
/// pages — no copy into the page cache, whose writeback on these machines is several times slower than
/// the disk — with the unaligned ends written through the page cache. There are two staging buffers:
/// while one is being written (`DirectWrites`, a thread of its own), chunks are decompressed and
/// verified into the other, so the worker's core never waits on the disk — not even at the end of a
/// part: `write` returns with the part's last write still running and finishes the part (`whenDone`)
/// when that write is done, while the worker is already decompressing the next one. Sparse files are written
/// chunk by chunk, leaving all-zero chunks as holes. A chunk written more than once is read once
/// (`SharedChunks`): once a part is on the filesystem, the places of its chunks that are used again
/// are handed to it. One per worker thread; `drain` before it is dropped.
final class ContentWriter {
    static let page = 4096
    /// Files smaller than this are written the ordinary way.
    static let directThreshold: UInt64 = 1 << 20

    /// Whether `node`'s content is written with O_DIRECT: a file of `directThreshold` or more that is
    /// not sparse (a sparse one is written chunk by chunk, its holes left out).
    static func writesDirect(_ node: Node) -> Bool { node.sparse != true && node.size >= directThreshold }
    static let openDirect: Int32 = 0o40000
    /// Bytes gathered in a staging buffer before they are written. 2 MiB writes kept /opt/swift's
    /// restore time (4.66 → 4.56 s, medians of 4 alternating) and took its peak memory from 90–102 to
    /// 85–89 MB, below restic's (4 MiB before).
    static let flushSize = 2 << 20

    let store: Store
    let shared: SharedChunks
    let compressor = Compressor(codec: .none)
    /// Where chunks go; the write in flight, if any, is always from `spare`.
    fileprivate var staging: UnsafeMutableRawBufferPointer
    fileprivate var spare: UnsafeMutableRawBufferPointer
    fileprivate let writes = DirectWrites()
    /// The part whose last write was still running when `write` returned.
    fileprivate var unfinished: Unfinished?
    private var scratch: [UInt8] = []

    /// Called once per `write`, when the part's bytes are all written: the bytes written (holes
    /// excluded), or what stopped it.
    typealias Completion = (Result<UInt64, Error>) -> Void

    fileprivate struct Unfinished {
        let direct: Int32
        let file: ChunkSource
        let path: PathBytes
        let written: UInt64
        /// Where the part's chunks that are used again went (for `SharedChunks.wrote`).
        let firsts: [(id: ChunkID, offset: Int)]
        let whenDone: Completion
    }

    init(store: Store, shared: SharedChunks) {
        self.store = store
        self.shared = shared
        let size = Self.flushSize + store.config.chunker.maxSize + 2 * Self.page
        staging = Self.stagingBuffer(size)
        spare = Self.stagingBuffer(size)
    }

    /// A staging buffer of `size` bytes whose first 4 MiB are in huge pages where the kernel allows
    /// them (`MADV_HUGEPAGE`): an O_DIRECT write pins the pages it writes from, one lookup per 2 MiB
    /// page instead of one per 4 KiB page (3 % of a restore's CPU). Its writes come from the first
    /// `flushSize` and a chunk or so; the rest stays in small pages, as a huge page is resident whole
    /// as soon as one byte of it is touched.
    private static func stagingBuffer(_ size: Int) -> UnsafeMutableRawBufferPointer {
        let huge = 2 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: huge)
        let advised = min(size & ~(huge - 1), ((flushSize + huge - 1) & ~(huge - 1)) + huge)
        if advised > 0 { _ = madvise(buffer.baseAddress, advised, MADV_HUGEPAGE) }  // an advice: without it, small pages
        return buffer
    }

    deinit {
        drain()
        writes.stop()
        staging.deallocate()
        spare.deallocate()
    }

    /// Writes chunks `range` of `node`'s content, the first at file offset `offset`, and calls
    /// `whenDone` once they are all written (perhaps during a later `write` or `drain`) or the part has
    /// failed. `target` holds the descriptor that created the file; `path` names it in errors only.
    func write(to target: ChunkSource, path: PathBytes, _ node: Node, range: Range<Int>, offset: Int, whenDone: @escaping Completion) {
        let sparse = node.sparse == true
        var file = StagedFile(writer: self, buffered: target.fd, path: path, offset: offset, direct: Self.writesDirect(node))
        var firsts: [(id: ChunkID, offset: Int)] = []
        let written: UInt64
        do {
            written = try fill(&file, node.content ?? [], range: range, sparse: sparse, firsts: &firsts)
        } catch {
            _ = try? file.settle()  // this part's write in flight is abandoned, but not its buffer
            file.closeDirect()
            whenDone(.failure(error))
            return
        }
        if writes.isRunning && file.direct >= 0 {
            unfinished = Unfinished(direct: file.opened, file: target, path: path, written: written, firsts: firsts, whenDone: whenDone)
        } else {
            file.closeDirect()
            shared.wrote(firsts, in: target)
            whenDone(.success(written))
        }
    }

    /// Waits for the write in flight and finishes the part it belongs to. Call before dropping the writer.
    func drain() {
        _ = settle()
    }

    /// Reads chunks `range` of `content` into the staging buffers and writes them (the last write may
    /// still be running on return); `firsts` gets the file offsets of the chunks read from the store
    /// that are used again. - Returns: the bytes written (holes excluded).
    private func fill(
        _ file: inout StagedFile, _ content: [ChunkID], range: Range<Int>, sparse: Bool, firsts: inout [(id: ChunkID, offset: Int)]
    ) throws -> UInt64 {
        var written: UInt64 = 0
        var position = file.base + file.start
        var index = range.lowerBound
        while index < range.upperBound {
            let id = content[index]
            guard let location = store.index.lookup(id) else { throw StoreError.missingBlob(id) }
            let length = try store.checkBounds(location, expecting: .data)
            guard sparse else {
                let run = [(id, location, length)] + candidates(content, after: index, in: range, room: runBytes - length)
                let filled = try fillRun(&file, run, at: position, firsts: &firsts)
                written += UInt64(filled.bytes)
                position += filled.bytes
                index += filled.chunks
                continue
            }
            // A sparse file goes chunk by chunk: an all-zero chunk stays a hole.
            index += 1
            let chunk = try file.reserve(length)
            if !shared.copy(id, into: chunk) {
                do {
                    try store.readBlob(location, expecting: .data, into: chunk, scratch: &scratch, compressor: compressor)
                } catch {
                    shared.abandon(id)
                    throw error
                }
                if shared.keep(id, UnsafeRawBufferPointer(chunk)) { firsts.append((id, position)) }
            }
            position += length
            if Self.isZero(UnsafeRawBufferPointer(chunk)) {
                file.restart(at: position)
                continue
            }
            file.commit(length)
            written += UInt64(length)
            try file.flush(final: true)
        }
        try file.flush(final: true)
        return written
    }

    /// A chunk found in the index, bounds checked: its raw length.
    private typealias Located = (id: ChunkID, location: BlobLocation, length: Int)
    /// What a run committed: its first `chunks` chunks, `bytes` long.
    private typealias Filled = (chunks: Int, bytes: Int)

    /// Bytes of chunks read side by side into the staging buffer and verified together: what fits
    /// beside a flush's worth (`reserve` then always finds room).
    private var runBytes: Int { Self.flushSize + store.config.chunker.maxSize }

    /// The chunks after `index` that may be read and verified with it, at most `room` bytes of them,
    /// up to one missing or out of bounds (the run it starts reports it).
    private func candidates(_ content: [ChunkID], after index: Int, in range: Range<Int>, room: Int) -> [Located] {
        var run: [Located] = []
        var left = room
        for next in (index + 1)..<range.upperBound {
            guard let location = store.index.lookup(content[next]), let length = try? store.checkBounds(location, expecting: .data), length <= left
            else { break }
            run.append((content[next], location, length))
            left -= length
        }
        return run
    }

    /// Reads a run of chunks side by side into the staging buffer, verifies them together (two hashed
    /// at a time: `BlobHash`) and commits them. The first is taken as `SharedChunks.copy` gives it
    /// (copied from where it was restored before, or claimed to be read here — after waiting, if
    /// another worker is reading it, while this one holds no claim); the others as far as
    /// `SharedChunks.claimNow` gives them without waiting, for a worker that holds claims must never
    /// wait for another: that one may be waiting for them. Every claim is settled here, kept or
    /// abandoned. - Returns: the chunks and bytes committed (at least the first).
    private func fillRun(_ file: inout StagedFile, _ run: [Located], at position: Int, firsts: inout [(id: ChunkID, offset: Int)]) throws -> Filled {
        let staged = try file.reserve(run.reduce(0) { $0 + $1.length })
        var places: [UnsafeMutableRawBufferPointer] = []
        var offset = 0
        for chunk in run {
            places.append(UnsafeMutableRawBufferPointer(rebasing: staged[offset..<(offset + chunk.length)]))
            offset += chunk.length
        }
        let copied = shared.copy(run[0].id, into: places[0])  // first: this worker holds no claim yet
        let count = 1 + run.dropFirst().prefix { shared.claimNow($0.id) }.count
        let reads = (copied ? 1 : 0)..<count
        do {
            var read: [Store.OpenedBlob] = []
            for i in reads {
                try store.readUncheckedBlob(run[i].location, expecting: .data, into: places[i], scratch: &scratch, compressor: compressor)
                read.append((UnsafeRawBufferPointer(places[i]), run[i].location))
            }
            try store.verify(read)
        } catch {
            for i in reads { shared.abandon(run[i].id) }
            throw error
        }
        var bytes = 0
        for i in 0..<count {
            if reads.contains(i), shared.keep(run[i].id, UnsafeRawBufferPointer(places[i])) { firsts.append((run[i].id, position + bytes)) }
            bytes += run[i].length
        }
        file.commit(bytes)
        return (count, bytes)
    }

    /// What `settle` found: the errno of the current part's write (0: none, or it succeeded), and
    /// whether the filesystem refused O_DIRECT for it (its bytes were then written normally).
    fileprivate struct Settled {
        var error: Int32 = 0
        var refused = false
    }

    /// Waits for the write in flight, if any. Where the filesystem refused O_DIRECT after all, writes
    /// those bytes through the page cache instead. A write that ends a part `write` has returned from
    /// finishes that part here (its result goes to its `whenDone`, not to the caller).
    fileprivate func settle() -> Settled {
        guard let done = writes.wait() else { return Settled() }
        let result = Settled(error: done.error, refused: done.refused)
        guard let part = unfinished else { return result }
        unfinished = nil
        close(part.direct)
        if result.error == 0 { shared.wrote(part.firsts, in: part.file) }
        part.whenDone(result.error == 0 ? .success(part.written) : .failure(FileSystem.Failure(path: part.path, operation: "write", code: result.error)))
        return Settled()
    }

    /// One `write` call's view of the staging buffers: `staging[m]` holds file byte `base + m`; data
    /// occupies `start..<end`.
    private struct StagedFile {
        unowned let writer: ContentWriter
        let buffered: Int32
        let path: PathBytes
        /// The O_DIRECT descriptor (-1: buffered writes only), and the one to close at the end.
        var direct: Int32
        let opened: Int32
        var base: Int
        var start: Int
        var end: Int

        init(writer: ContentWriter, buffered: Int32, path: PathBytes, offset: Int, direct wanted: Bool) {
            self.writer = writer
            self.buffered = buffered
            self.path = path
            // O_DIRECT needs a descriptor of its own. "/proc/self/fd/N" reopens the very file `buffered`
            // is open on (no name is looked up again); -1 where refused (tmpfs before Linux 6.6, some
            // FUSE filesystems): writes stay buffered.
            direct = wanted ? open("/proc/self/fd/\(buffered)", O_WRONLY | O_CLOEXEC | ContentWriter.openDirect) : -1
            opened = direct
            base = offset & ~(ContentWriter.page - 1)
            start = offset - base
            end = start
        }

        func closeDirect() {
            if opened >= 0 { close(opened) }
        }

        /// Room for `length` more bytes at `end` (flushing first when the buffer is full enough).
        mutating func reserve(_ length: Int) throws -> UnsafeMutableRawBufferPointer {
            if end + length > writer.staging.count || end >= ContentWriter.flushSize { try flush(final: false) }
            return UnsafeMutableRawBufferPointer(rebasing: writer.staging[end..<(end + length)])
        }

        /// The `length` bytes reserved last are data to write.
        mutating func commit(_ length: Int) { end += length }

        /// Starts again (empty) at file offset `position` (after a hole).
        mutating func restart(at position: Int) {
            base = position & ~(ContentWriter.page - 1)
            start = position - base
            end = start
        }

        /// staging[from..<to] and its file offset.
        func piece(_ from: Int, _ to: Int) -> DirectWrites.Piece {
            DirectWrites.Piece(bytes: UnsafeRawPointer(writer.staging.baseAddress! + from), count: max(0, to - from), offset: off_t(base + from))
        }

        /// Writes staging[from..<to] through the page cache.
        func put(_ from: Int, _ to: Int) throws {
            guard to > from else { return }
            let error = ContentWriter.writeFully(buffered, writer.staging.baseAddress! + from, count: to - from, at: off_t(base + from))
            if error != 0 { throw FileSystem.Failure(path: path, operation: "write", code: error) }
        }

        /// Waits for the write in flight (`ContentWriter.settle`), and stops using O_DIRECT where it
        /// was refused.
        mutating func settle() throws {
            let settled = writer.settle()
            if settled.refused { direct = -1 }  // the filesystem refused O_DIRECT after all
            if settled.error != 0 { throw FileSystem.Failure(path: path, operation: "write", code: settled.error) }
        }

        /// Writes what is staged: whole pages with O_DIRECT and the unaligned ends through the page
        /// cache, all on the writes thread (the other buffer takes chunks meanwhile); `final` writes the
        /// tail too. Returns with the write running.
        mutating func flush(final: Bool) throws {
            let page = ContentWriter.page
            guard direct >= 0 else {
                try put(start, end)  // nothing in flight is from this buffer: it stays the one to fill
                restart(at: base + end)
                return
            }
            let alignedStart = (start + page - 1) & ~(page - 1)
            let alignedEnd = end & ~(page - 1)
            try settle()  // the spare buffer is free from here on
            var write = DirectWrites.Write(fd: direct, buffered: buffered, ends: [piece(start, min(alignedStart, end))])
            if alignedEnd > alignedStart { write.direct = piece(alignedStart, alignedEnd) }
            if final { write.ends.append(piece(max(alignedEnd, alignedStart), end)) }  // the tail, beside the aligned run
            write.ends.removeAll { $0.count == 0 }
            if direct >= 0 {
                writer.writes.start(write)
            } else {  // refused by the write just settled: the rest of this part goes through the page cache
                try put(start, final ? end : max(start, alignedEnd))
            }
            start = final ? end : max(start, alignedEnd)
            // Keep the unwritten tail (less than a page) at the same alignment, at the front of the
            // spare buffer, which becomes the one to fill (this one may be being written).
            let keepFrom = start & ~(page - 1)
            memcpy(writer.spare.baseAddress!, writer.staging.baseAddress! + keepFrom, end - keepFrom)
            swap(&writer.staging, &writer.spare)
            base += keepFrom
            start -= keepFrom
            end -= keepFrom
        }
    }

    /// pwrite until all `count` bytes are written. - Returns: 0, or the errno that stopped it.
    static func writeFully(_ fd: Int32, _ bytes: UnsafeRawPointer, count: Int, at offset: off_t) -> Int32 {
        var done = 0
        while done < count {
            let n = pwrite(fd, bytes + done, count - done, offset + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        return 0
    }

    /// True when every byte is zero (a sparse file's hole).
    static func isZero(_ b: UnsafeRawBufferPointer) -> Bool {
        let words = b.count / 8
        let p = b.baseAddress!
        var acc: UInt64 = 0
        for i in 0..<words { acc |= p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) }
        for i in (words * 8)..<b.count { acc |= UInt64(b[i]) }
        return acc == 0
    }
}
