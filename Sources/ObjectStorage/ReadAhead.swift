import ChunkStore
import Foundation

/// Restore's look-ahead on object storage. The blobs a restore will read soon (`StorageBackend.prefetch`)
/// are fetched by threads of their own in large ranged GETs — a pack's blobs, and the bytes between
/// them, in one request, usually the whole pack — and held for every read that falls in them, this
/// part's and the next ones' (an encrypted store shuffles a pack's blobs, so the few parts that share
/// a pack each need blobs from all over it). A worker that reaches a blob first waits for its piece.
///
/// Why: RGW spends about as much CPU on a request as on 0.7 MB of its body (measured on the test
/// cluster: 1,245 GETs of 400 KB cost its daemons 3.2 CPU-seconds, 25 GETs of the same bytes 1.2), and
/// a restore that made one GET per blob, only as many at a time as it had workers, spent it there.
///
/// At most `budget` bytes are held or on their way; a hint waits for room (the restore's planner runs
/// ahead of its workers only as far as that), and one that finds none in `patience` is dropped — its
/// blobs are read by GETs of their own, as before. A piece is done with when every hinted blob in it
/// has been read, or when reads have moved `passed` hints beyond the last that wanted it (its blob came
/// from elsewhere: restore's shared chunks); done pieces give their room to new ones, least recently
/// used first. A piece that fails to arrive is forgotten: the read makes its own GET, and reports what
/// that finds. Pieces live in mapped memory that is reused (up to the budget again): fresh pages for
/// every piece cost more kernel time than the copies, and freed heap blocks this large stayed with
/// the fetchers' malloc arenas (a restore's peak grew by 200 MB before).
final class ReadAhead: @unchecked Sendable {  // state guarded by `condition`
    private final class Piece {
        let key: String
        let range: Range<Int>
        /// Where its bytes go (its first `range.count` bytes), its own until it is removed.
        let buffer: UnsafeMutableRawBufferPointer
        /// Bytes of hinted blobs in it not read yet.
        var wanted: Int
        /// Bytes that arrived (fewer than asked at the object's end); nil until then.
        var arrived: Int?
        var failed = false
        /// Set when it is forgotten: its buffer is no longer its own.
        var removed = false
        /// When it arrived, or was last read.
        var used: ContinuousClock.Instant?
        /// The hint that made it, and the last that wanted bytes of it (numbered in order).
        let firstHint: Int
        var lastHint: Int

        init(key: String, range: Range<Int>, buffer: UnsafeMutableRawBufferPointer, wanted: Int, hint: Int) {
            self.key = key
            self.range = range
            self.buffer = buffer
            self.wanted = wanted
            self.firstHint = hint
            self.lastHint = hint
        }

        func covers(_ offset: Int, _ count: Int) -> Bool { range.lowerBound <= offset && offset + count <= range.upperBound }
    }

    private let condition = NSCondition()
    private var pieces: [String: [Piece]] = [:]
    private var queued: [Piece] = []
    private var held = 0
    private var fetching = 0
    /// Hints so far, and the newest hint whose pieces have been read.
    private var hints = 0
    private var readHint = 0
    /// Mapped buffers of removed pieces, for the next ones.
    private var spare: [UnsafeMutableRawBufferPointer] = []
    private let budget: Int
    private let fetchers: Int
    private let fetch: @Sendable (String, Int, UnsafeMutableRawBufferPointer) throws -> Int

    /// Hinted blobs fewer than this many bytes apart share a GET, the bytes between them included
    /// (other blobs of the pack, which the next parts are likely to need).
    static let gap = 4 << 20
    /// Bytes per GET at most (twice a pack's target size; a longer blob is fetched whole).
    static let pieceLimit = 2 * PackFormat.targetSize
    /// A piece wanted by no hint this far behind the newest read is done with. Hints are counted per
    /// pack, so this is a few restore tasks: with 8, the slower worker's pieces were taken from it
    /// (a third more GETs than with 32, restoring /opt/swift/usr/bin).
    static let passed = 32
    /// How long a hint waits for room.
    static let patience = 1.0

    /// A look-ahead holding at most `budget` bytes, fetching with `fetchers` threads through `fetch`
    /// (which reads bytes of an object from an offset into a buffer, and returns how many).
    init(budget: Int, fetchers: Int, fetch: @escaping @Sendable (String, Int, UnsafeMutableRawBufferPointer) throws -> Int) {
        self.budget = budget
        self.fetchers = max(1, fetchers)
        self.fetch = fetch
    }

    deinit {
        for piece in pieces.values.joined() { munmap(piece.buffer.baseAddress, piece.buffer.count) }
        for buffer in spare { munmap(buffer.baseAddress, buffer.count) }
    }

    /// Notes that `ranges` of object `key` (sorted, one per blob) will be read: those a piece holds
    /// already are counted in it, the others become pieces to fetch once there is room for them
    /// (waiting for it up to `patience`; what still finds none is left to the reads).
    func add(_ key: String, ranges: [Range<Int>]) {
        condition.lock()
        defer { condition.unlock() }
        hints += 1
        let deadline = Date(timeIntervalSinceNow: Self.patience)
        var (covered, fresh) = split(key, ranges)
        // Nothing of this hint is counted while it waits, so it cannot hold up its own room.
        while !makeRoom(min(fresh.reduce(0) { $0 + $1.range.count }, budget / 2)) && condition.wait(until: deadline) {
            (covered, fresh) = split(key, ranges)
        }
        for (piece, count) in covered {
            piece.wanted += count
            piece.lastHint = hints
        }
        for merged in fresh {
            guard makeRoom(merged.range.count), let buffer = allocate(merged.range.count) else { break }
            let piece = Piece(key: key, range: merged.range, buffer: buffer, wanted: merged.wanted, hint: hints)
            pieces[key, default: []].append(piece)
            queued.append(piece)
            held += merged.range.count
        }
        while fetching < fetchers && fetching < queued.count {
            fetching += 1
            Thread { [self] in fetchQueued() }.start()
        }
    }

    /// `ranges` of `key` split into those a piece holds (with their byte counts) and the pieces the
    /// others make. Called with the lock held.
    private func split(_ key: String, _ ranges: [Range<Int>]) -> (covered: [(Piece, Int)], fresh: [MergedRanges.Piece]) {
        var covered: [(Piece, Int)] = []
        var uncovered: [Range<Int>] = []
        for r in ranges {
            if let piece = pieces[key]?.first(where: { $0.covers(r.lowerBound, r.count) && !$0.failed }) {
                covered.append((piece, r.count))
            } else {
                uncovered.append(r)
            }
        }
        // Bytes between two blobs that a piece holds already are not fetched again.
        let held = pieces[key] ?? []
        let merged = MergedRanges(uncovered, gap: Self.gap, limit: Self.pieceLimit) { between in held.contains { $0.range.overlaps(between) } }
        return (covered, Array(merged))
    }

    /// Copies bytes `offset..<offset+buffer.count` of `key` into `buffer` when a piece holds them,
    /// waiting for it to arrive. - Returns: the bytes copied, or nil when no piece holds them (or the
    /// piece failed): the caller reads them itself.
    func read(_ key: String, at offset: Int, into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        condition.lock()
        defer { condition.unlock() }
        guard let piece = pieces[key]?.first(where: { $0.covers(offset, buffer.count) }) else { return nil }
        while piece.arrived == nil && !piece.failed { condition.wait() }
        // Made room for others while this read waited: the caller reads the bytes itself.
        guard !piece.removed else { return nil }
        guard let arrived = piece.arrived else {
            remove(piece)
            return nil
        }
        let start = offset - piece.range.lowerBound
        let n = max(0, min(buffer.count, arrived - start))  // fewer when the object was shorter
        if n > 0 { buffer.baseAddress!.copyMemory(from: piece.buffer.baseAddress! + start, byteCount: n) }
        piece.wanted -= buffer.count
        piece.used = .now
        readHint = max(readHint, piece.firstHint)
        condition.broadcast()  // room, perhaps, for a waiting hint
        return n
    }

    /// One fetcher: takes the oldest queued piece until none is left.
    private func fetchQueued() {
        condition.lock()
        while !queued.isEmpty {
            let piece = queued.removeFirst()
            condition.unlock()
            // The buffer may be larger (a reused one): ask for the piece's bytes only.
            let result = Result { try fetch(piece.key, piece.range.lowerBound, UnsafeMutableRawBufferPointer(rebasing: piece.buffer[..<piece.range.count])) }
            condition.lock()
            switch result {
            case .success(let n): piece.arrived = n
            case .failure: piece.failed = true
            }
            piece.used = .now
            condition.broadcast()
        }
        fetching -= 1
        condition.unlock()
    }

    /// Frees room for `count` more bytes by dropping pieces that are done with, least recently used
    /// first. Called with the lock held. - Returns: whether there is room.
    private func makeRoom(_ count: Int) -> Bool {
        guard held + count > budget else { return true }
        let spent = pieces.values.joined().filter { piece in
            piece.failed || (piece.arrived != nil && (piece.wanted <= 0 || piece.lastHint < readHint - Self.passed))
        }
        for piece in spent.sorted(by: { $0.used! < $1.used! }) where held + count > budget { remove(piece) }  // `used` is set on arrival
        return held + count <= budget
    }

    /// Forgets `piece`, keeping its buffer for another. Called with the lock held.
    private func remove(_ piece: Piece) {
        guard let i = pieces[piece.key]?.firstIndex(where: { $0 === piece }) else { return }
        pieces[piece.key]!.remove(at: i)
        if pieces[piece.key]!.isEmpty { pieces[piece.key] = nil }
        piece.removed = true
        held -= piece.range.count
        spare.append(piece.buffer)
        spare.sort { $0.count < $1.count }
        trimSpares(keeping: 0)
    }

    /// Unmaps spares, largest first, until the pieces, `extra` bytes about to be mapped and the spares
    /// fit the budget.
    /// Called with the lock held.
    private func trimSpares(keeping extra: Int) {
        while held + extra + spare.reduce(0, { $0 + $1.count }) > budget, let largest = spare.popLast() { munmap(largest.baseAddress, largest.count) }
    }

    /// A buffer of at least `count` bytes: the smallest spare that is large enough, or a new mapping
    /// (whole MiBs, so spares fit later pieces). Called with the lock held.
    private func allocate(_ count: Int) -> UnsafeMutableRawBufferPointer? {
        if let i = spare.firstIndex(where: { $0.count >= count }) { return spare.remove(at: i) }  // sorted by size
        let size = (count + (1 << 20) - 1) & ~((1 << 20) - 1)
        trimSpares(keeping: size)
        guard let memory = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), memory != MAP_FAILED else { return nil }
        return UnsafeMutableRawBufferPointer(start: memory, count: size)
    }
}
