import Compression
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
    /// Merges sorted segments (oldest first) into one; an id in several keeps the newest entry.
    static func merge(_ segments: [IndexSegment]) -> (name: String, bytes: [UInt8]) {
        var packNumbers: [ChunkID: UInt32] = [:]
        var packs: [ChunkID] = []
        var remap: [[UInt32]] = []
        for s in segments {
            remap.append(s.packs.map { p in
                if let n = packNumbers[p] { return n }
                packNumbers[p] = UInt32(packs.count)
                packs.append(p)
                return UInt32(packs.count - 1)
            })
        }
        let total = segments.reduce(0) { $0 + $1.count }
        var out = [UInt8]()
        out.reserveCapacity(headerSize + packs.count * 32 + total * entrySize)
        out.append(contentsOf: magic)
        out.appendLE32(UInt32(packs.count))
        let countOffset = out.count
        out.appendLE32(0)
        for p in packs { out.append(p) }
        var cursors = Array(repeating: 0, count: segments.count)
        var written = 0
        var last: ChunkID?
        while true {
            var best = -1
            var bestID = ChunkID(w0: 0, w1: 0, w2: 0, w3: 0)
            // On equal ids the newest segment (the last) wins: it is where the index looks first.
            for (i, s) in segments.enumerated() where cursors[i] < s.count {
                let id = s.idAt(cursors[i])
                if best < 0 || id < bestID || id == bestID {
                    best = i
                    bestID = id
                }
            }
            if best < 0 { break }
            let s = segments[best]
            let at = s.entriesStart + cursors[best] * entrySize
            cursors[best] += 1
            if bestID == last { continue }
            last = bestID
            let raw = UnsafeRawBufferPointer(rebasing: s.mapping[at..<at + entrySize])
            out.append(contentsOf: raw[0..<32])
            out.appendLE32(remap[best][Int(raw.le32(32))])
            out.append(contentsOf: raw[36..<entrySize])
            written += 1
        }
        withUnsafeBytes(of: UInt32(written).littleEndian) { b in
            for k in 0..<4 { out[countOffset + k] = b[k] }
        }
        return (ChunkID(hashing: out).hex, out)
    }
}
