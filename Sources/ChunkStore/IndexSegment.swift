import Compression
import Crypto
import Foundation

/// One immutable, sorted index segment (docs/FORMAT.md, "Index segments"), memory-mapped so that looking
/// up a chunk touches only the pages a binary search visits: resident memory does not grow with the
/// store's size.
///
///     magic "SMINDEX1" | pack count u32 | entry count u32 | pack ids (count × 32) | entries (count × 52)
///
/// Entry: id (32) | pack number u32 | offset u32 | stored length u32 | raw length u32 | type u8 | codec u8 | 0 u16
/// The entries are sorted by id; the file is named by the SHA-256 of its bytes.
public final class IndexSegment: @unchecked Sendable {  // immutable after init
    public static let magic = Array("SMINDEX1".utf8)
    static let headerSize = 16
    static let entrySize = 52

    public let name: String
    public let packs: [ChunkID]
    public let count: Int
    let mapping: UnsafeRawBufferPointer
    let entriesStart: Int

    /// Maps and checks the segment at `path`: its bytes must hash to its name and its layout must be sound.
    public init(path: String, name: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try FileIO.check(fd, path, "open")
        defer { close(fd) }
        var st = stat()
        try FileIO.check(fstat(fd, &st), path, "stat")
        let size = Int(st.st_size)
        guard size >= Self.headerSize else { throw StoreError.damagedIndex(segment: name, reason: "too short") }
        guard let base = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw StoreError.io(path: path, operation: "map", errno: errno)
        }
        let map = UnsafeRawBufferPointer(start: base, count: size)
        do {
            // Hash in a streaming pass so the check does not leave the whole file resident.
            guard ChunkID(hashing: map).hex == name else { throw StoreError.damagedIndex(segment: name, reason: "checksum mismatch") }
            madvise(base, size, MADV_DONTNEED)
            guard Array(map[0..<8]) == Self.magic else { throw StoreError.damagedIndex(segment: name, reason: "bad magic") }
            let packCount = Int(map.le32(8)), entryCount = Int(map.le32(12))
            let start = Self.headerSize + packCount * 32
            guard size == start + entryCount * Self.entrySize else {
                throw StoreError.damagedIndex(segment: name, reason: "size does not match its counts")
            }
            var packs: [ChunkID] = []
            packs.reserveCapacity(packCount)
            for i in 0..<packCount {
                let at = Self.headerSize + i * 32
                packs.append(ChunkID(bytes: UnsafeRawBufferPointer(rebasing: map[at..<at + 32])))
            }
            self.packs = packs
            self.count = entryCount
            self.entriesStart = start
        } catch let error as StoreError {
            munmap(base, size)
            throw error
        } catch {
            munmap(base, size)
            throw StoreError.damagedIndex(segment: name, reason: "\(error)")
        }
        self.name = name
        self.mapping = map
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: mapping.baseAddress), mapping.count) }

    /// Binary search for `id`.
    public func lookup(_ id: ChunkID) -> BlobLocation? {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            let candidate = idAt(mid)
            if candidate == id { return location(at: mid) }
            if candidate < id { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }

    @inline(__always) func idAt(_ i: Int) -> ChunkID {
        let at = entriesStart + i * Self.entrySize
        return ChunkID(bytes: UnsafeRawBufferPointer(rebasing: mapping[at..<at + 32]))
    }

    /// The entry at position `i` (0..<count), or nil when its fields are out of range.
    public func location(at i: Int) -> BlobLocation? {
        let at = entriesStart + i * Self.entrySize
        let packNumber = Int(mapping.le32(at + 32))
        guard packNumber < packs.count, let type = BlobType(rawValue: mapping[at + 48]),
            let codec = Codec.Kind(rawValue: mapping[at + 49])
        else { return nil }
        return BlobLocation(
            pack: packs[packNumber],
            entry: BlobEntry(
                id: idAt(i), type: type, codec: codec, offset: mapping.le32(at + 36),
                storedLength: mapping.le32(at + 40), rawLength: mapping.le32(at + 44)))
    }

    /// Encodes a segment for `locations`, and returns its bytes and name.
    public static func encode(_ locations: [BlobLocation]) -> (name: String, bytes: [UInt8]) {
        let sorted = locations.sorted { $0.entry.id < $1.entry.id }
        var packNumbers: [ChunkID: UInt32] = [:]
        var packs: [ChunkID] = []
        for l in sorted where packNumbers[l.pack] == nil {
            packNumbers[l.pack] = UInt32(packs.count)
            packs.append(l.pack)
        }
        var out = [UInt8]()
        out.reserveCapacity(headerSize + packs.count * 32 + sorted.count * entrySize)
        out.append(contentsOf: magic)
        out.appendLE32(UInt32(packs.count))
        out.appendLE32(UInt32(sorted.count))
        for p in packs { out.append(p) }
        for l in sorted { appendEntry(l.entry, pack: packNumbers[l.pack]!, to: &out) }
        return (ChunkID(hashing: out).hex, out)
    }

    /// Appends one 52-byte entry (see the layout above).
    static func appendEntry(_ e: BlobEntry, pack: UInt32, to out: inout [UInt8]) {
        out.append(e.id)
        out.appendLE32(pack)
        out.appendLE32(e.offset)
        out.appendLE32(e.storedLength)
        out.appendLE32(e.rawLength)
        out.append(e.type.rawValue)
        out.append(e.codec.rawValue)
        out.append(0)
        out.append(0)
    }
}

extension IndexSegment {
    /// Gives back the mapped pages of entries before `position` (they stay in the page cache): a pass
    /// over a whole segment then keeps only a window of it resident.
    func releasePages(before position: Int) {
        let end = (entriesStart + position * Self.entrySize) & ~(Int(getpagesize()) - 1)
        guard end > 0 else { return }
        madvise(UnsafeMutableRawPointer(mutating: mapping.baseAddress!), end, MADV_DONTNEED)
    }
}

/// Walks index segments (oldest first) together in id order, yielding each id once: from the newest
/// segment that has it, as a lookup would find it. Memory: one cursor per segment; the pages behind
/// the cursors are released as it goes.
struct SegmentMerge {
    let segments: [IndexSegment]
    private var cursors: [Int]
    private var heads: [ChunkID?]
    private var released: [Int]
    private static let releaseEvery = 1 << 17  // entries (6.5 MiB)

    init(_ segments: [IndexSegment]) {
        self.segments = segments
        cursors = Array(repeating: 0, count: segments.count)
        heads = segments.map { $0.count > 0 ? $0.idAt(0) : nil }
        released = cursors
    }

    /// The next id, with the segment and position of its entry.
    mutating func next() -> (id: ChunkID, segment: Int, position: Int)? {
        var best = -1
        var bestID = ChunkID(w0: 0, w1: 0, w2: 0, w3: 0)
        for (i, head) in heads.enumerated() {
            guard let head else { continue }
            if best < 0 || head <= bestID {  // on equal ids the later (newer) segment wins
                best = i
                bestID = head
            }
        }
        guard best >= 0 else { return nil }
        let position = cursors[best]
        for i in heads.indices where heads[i] == bestID { advance(i) }
        return (bestID, best, position)
    }

    private mutating func advance(_ i: Int) {
        cursors[i] += 1
        let s = segments[i]
        heads[i] = cursors[i] < s.count ? s.idAt(cursors[i]) : nil
        if cursors[i] - released[i] >= Self.releaseEvery || heads[i] == nil {
            s.releasePages(before: cursors[i])
            released[i] = cursors[i]
        }
    }
}

extension IndexSegment {
    /// Writes one segment into `directory` holding the newest entry of every id of `segments` that
    /// `keep` accepts, streaming: memory is the pack list and a write buffer, whatever the size.
    /// `makeFilter` is called once per pass (there are two: count, then write); each filter sees the
    /// ids in ascending order. - Returns: the new segment's name and entry count, or nil when no entry
    /// is kept.
    static func writeMerged(
        _ segments: [IndexSegment], into directory: String, keep makeFilter: () -> (ChunkID) -> Bool = { { _ in true } }
    ) throws -> (name: String, count: Int)? {
        // Pass 1: count the kept entries and number their packs in order of first use.
        var packNumbers: [ChunkID: UInt32] = [:]
        var packs: [ChunkID] = []
        var count = 0
        var merge = SegmentMerge(segments)
        var keep = makeFilter()
        while let (id, s, position) = merge.next() {
            guard keep(id) else { continue }
            let segment = segments[s]
            let pack = segment.packs[Int(segment.mapping.le32(segment.entriesStart + position * entrySize + 32))]
            if packNumbers[pack] == nil {
                packNumbers[pack] = UInt32(packs.count)
                packs.append(pack)
            }
            count += 1
        }
        guard count > 0 else { return nil }
        let remap = segments.map { s in s.packs.map { packNumbers[$0] ?? .max } }

        // Pass 2: write it, hashing as it goes (a segment is named by its bytes' SHA-256).
        let name = try FileIO.writeThroughTemp(directory: directory) { fd, temp in
            var hasher = SHA256()
            var block = [UInt8]()
            block.reserveCapacity(1 << 20)
            func flush() throws {
                block.withUnsafeBytes { hasher.update(bufferPointer: $0) }
                try block.withUnsafeBytes { try FileIO.writeAll(fd: fd, $0, path: temp) }
                block.removeAll(keepingCapacity: true)
            }
            block.append(contentsOf: magic)
            block.appendLE32(UInt32(packs.count))
            block.appendLE32(UInt32(count))
            for p in packs {
                block.append(p)
                if block.count >= 1 << 20 { try flush() }
            }
            var written = 0
            var merge = SegmentMerge(segments)
            keep = makeFilter()
            while let (id, s, position) = merge.next() {
                guard keep(id) else { continue }
                let segment = segments[s]
                let at = segment.entriesStart + position * entrySize
                let raw = UnsafeRawBufferPointer(rebasing: segment.mapping[at..<at + entrySize])
                block.append(contentsOf: raw[0..<32])
                block.appendLE32(remap[s][Int(raw.le32(32))])
                block.append(contentsOf: raw[36..<entrySize])
                written += 1
                if block.count >= 1 << 20 { try flush() }
            }
            try flush()
            guard written == count else {
                throw StoreError.refused("the index changed while it was being rewritten (\(written) entries, expected \(count))")
            }
            return hasher.finalize().withUnsafeBytes { ChunkID(bytes: $0).hex }
        }
        return (name, count)
    }
}
