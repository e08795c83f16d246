import Compression
import Crypto
import Foundation

/// One immutable, sorted index segment (docs/FORMAT.md, "Index segments"), memory-mapped for lookups,
/// so that resident memory follows the pages binary searches visit — though each fault maps the
/// kernel's whole fault-around window or large folio (64 KiB to 2 MiB here), so a backup that looks
/// up most chunks ends with most of the index resident (about 55 bytes per chunk). Passes over whole
/// segments (compaction, prune) read them sequentially instead (`SegmentMerge`), which leaves nothing
/// resident.
///
///     magic "SMINDEX1" | pack count u32 | entry count u32 | pack ids (count × 32) | entries (count × 52)
///
/// Entry: id (32) | pack number u32 | offset u32 | stored length u32 | raw length u32 | type u8 | codec u8 | 0 u16
/// The entries are sorted by id; the file is named by the SHA-256 of its bytes.
public final class IndexSegment: @unchecked Sendable {  // immutable after init
    /// The first bytes of every segment.
    public static let magic = Array("SMINDEX1".utf8)
    static let headerSize = 16
    static let entrySize = 52

    /// The segment's name (its object key's last part).
    public let name: String
    let path: String
    /// The packs its entries are in.
    public let packs: [ChunkID]
    /// How many entries it has.
    public let count: Int
    let mapping: UnsafeRawBufferPointer
    let entriesStart: Int

    /// Maps and checks the segment at `path`: its bytes must hash to its name and its layout must be
    /// sound. Checked and read with reads, not through the mapping, so opening leaves none of it resident.
    public init(path: String, name: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try FileIO.check(fd, path, "open")
        defer { close(fd) }
        var st = stat()
        try FileIO.check(fstat(fd, &st), path, "stat")
        let size = Int(st.st_size)
        guard size >= Self.headerSize else { throw StoreError.damagedIndex(segment: name, reason: "too short") }
        guard try Self.hash(fd: fd, size: size, path: path) == name else {
            throw StoreError.damagedIndex(segment: name, reason: "checksum mismatch")
        }
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        _ = try header.withUnsafeMutableBytes { try FileIO.preadFully(fd: fd, into: $0, at: 0, path: path) }
        let (packCount, entryCount) = header.withUnsafeBytes { (Int($0.le32(8)), Int($0.le32(12))) }
        guard Array(header[0..<8]) == Self.magic else { throw StoreError.damagedIndex(segment: name, reason: "bad magic") }
        let start = Self.headerSize + packCount * 32
        guard size == start + entryCount * Self.entrySize else {
            throw StoreError.damagedIndex(segment: name, reason: "size does not match its counts")
        }
        var packBytes = [UInt8](repeating: 0, count: packCount * 32)
        _ = try packBytes.withUnsafeMutableBytes { try FileIO.preadFully(fd: fd, into: $0, at: Self.headerSize, path: path) }
        packs = packBytes.withUnsafeBytes { b in (0..<packCount).map { ChunkID(bytes: UnsafeRawBufferPointer(rebasing: b[$0 * 32..<$0 * 32 + 32])) } }
        guard let base = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else {
            throw StoreError.io(path: path, operation: "map", errno: errno)
        }
        self.mapping = UnsafeRawBufferPointer(start: base, count: size)
        self.count = entryCount
        self.entriesStart = start
        self.name = name
        self.path = path
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: mapping.baseAddress), mapping.count) }

    private static func hash(fd: Int32, size: Int, path: String) throws -> String {
        var hasher = SHA256()
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { block.deallocate() }
        var offset = 0
        while offset < size {
            let n = try FileIO.preadFully(
                fd: fd, into: UnsafeMutableRawBufferPointer(rebasing: block[..<min(block.count, size - offset)]), at: offset, path: path)
            guard n > 0 else { throw StoreError.damagedIndex(segment: path, reason: "shorter than its size") }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: block[..<n]))
            offset += n
        }
        return hasher.finalize().withUnsafeBytes { ChunkID(bytes: $0).hex }
    }

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
        return location(of: Entry(bytes: UnsafeRawBufferPointer(rebasing: mapping[at..<at + Self.entrySize])))
    }

    /// `entry` (one of this segment's) as a location, or nil when its fields are out of range.
    func location(of entry: Entry) -> BlobLocation? {
        guard entry.packNumber < packs.count, let type = BlobType(rawValue: entry.typeByte),
            let codec = Codec.Kind(rawValue: entry.codecByte)
        else { return nil }
        return BlobLocation(
            pack: packs[entry.packNumber],
            entry: BlobEntry(id: entry.id, type: type, codec: codec, offset: entry.offset, storedLength: entry.storedLength, rawLength: entry.rawLength))
    }

    /// A view of one 52-byte entry (layout above).
    struct Entry {
        let bytes: UnsafeRawBufferPointer
        var id: ChunkID { ChunkID(bytes: bytes) }
        var packNumber: Int { Int(bytes.le32(32)) }
        var offset: UInt32 { bytes.le32(36) }
        var storedLength: UInt32 { bytes.le32(40) }
        var rawLength: UInt32 { bytes.le32(44) }
        var typeByte: UInt8 { bytes[48] }
        var codecByte: UInt8 { bytes[49] }
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
        e.appendPlacement(to: &out)
    }
}

/// Walks index segments (oldest first) together in id order, yielding each id once: from the newest
/// segment that has it, as a lookup would find it. Reads each segment sequentially in blocks of 64 KiB
/// (not through its mapping, whose pages would stay resident), so memory is one block per segment.
final class SegmentMerge {
    let segments: [IndexSegment]
    private let readers: [Reader]

    init(_ segments: [IndexSegment]) throws {
        self.segments = segments
        readers = try segments.map { try Reader($0) }
    }

    /// The next id, the segment whose entry it is, and that entry (valid until the next call).
    func next() throws -> (id: ChunkID, segment: Int, entry: IndexSegment.Entry)? {
        for reader in readers where reader.pending {
            reader.pending = false
            try reader.advance()
        }
        var best = -1
        var bestID = ChunkID(w0: 0, w1: 0, w2: 0, w3: 0)
        for (i, reader) in readers.enumerated() {
            guard let head = reader.head else { continue }
            if best < 0 || head <= bestID {  // on equal ids the later (newer) segment wins
                best = i
                bestID = head
            }
        }
        guard best >= 0 else { return nil }
        let entry = readers[best].entry
        for (i, reader) in readers.enumerated() where i != best && reader.head == bestID { try reader.advance() }
        readers[best].pending = true  // advanced on the next call, so `entry` stays valid until then
        return (bestID, best, entry)
    }

    /// Sequential reader of one segment's entries.
    private final class Reader {
        let segment: IndexSegment
        let fd: Int32
        let block: UnsafeMutableRawBufferPointer
        var blockStart = 0  // entry number of the block's first entry
        var blockCount = 0
        var position = 0
        var head: ChunkID?
        var pending = false
        static let entriesPerBlock = 1260  // 64 KiB

        init(_ segment: IndexSegment) throws {
            self.segment = segment
            fd = open(segment.path, O_RDONLY | O_CLOEXEC)
            try FileIO.check(fd, segment.path, "open")
            block = .allocate(byteCount: Self.entriesPerBlock * IndexSegment.entrySize, alignment: 16)
            try load()
        }

        deinit {
            close(fd)
            block.deallocate()
        }

        var entry: IndexSegment.Entry {
            let at = (position - blockStart) * IndexSegment.entrySize
            return IndexSegment.Entry(bytes: UnsafeRawBufferPointer(rebasing: block[at..<at + IndexSegment.entrySize]))
        }

        func advance() throws {
            position += 1
            try load()
        }

        private func load() throws {
            guard position < segment.count else {
                head = nil
                return
            }
            if position >= blockStart + blockCount {
                blockStart = position
                blockCount = min(Self.entriesPerBlock, segment.count - position)
                let bytes = blockCount * IndexSegment.entrySize
                let got = try FileIO.preadFully(
                    fd: fd, into: UnsafeMutableRawBufferPointer(rebasing: block[..<bytes]),
                    at: segment.entriesStart + position * IndexSegment.entrySize, path: segment.path)
                guard got == bytes else { throw StoreError.damagedIndex(segment: segment.name, reason: "shorter than its counts") }
            }
            head = entry.id
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
        var merge = try SegmentMerge(segments)
        var keep = makeFilter()
        while let (id, s, entry) = try merge.next() {
            guard keep(id) else { continue }
            guard entry.packNumber < segments[s].packs.count else {
                throw StoreError.damagedIndex(segment: segments[s].name, reason: "entry \(id) names pack \(entry.packNumber) of \(segments[s].packs.count)")
            }
            let pack = segments[s].packs[entry.packNumber]
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
            merge = try SegmentMerge(segments)
            keep = makeFilter()
            while let (id, s, entry) = try merge.next() {
                guard keep(id) else { continue }
                let raw = entry.bytes
                block.append(contentsOf: raw[0..<32])
                block.appendLE32(remap[s][entry.packNumber])
                block.append(contentsOf: raw[36..<entrySize])
                written += 1
                if block.count >= 1 << 20 { try flush() }
            }
            try flush()
            guard written == count else {
                throw StoreError.indexChanged(written: written, expected: count)
            }
            return hasher.finalize().withUnsafeBytes { ChunkID(bytes: $0).hex }
        }
        return (name, count)
    }
}
