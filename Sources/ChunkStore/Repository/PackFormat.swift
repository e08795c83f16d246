import CZlib
import Compression

/// The byte layout of a pack file (docs/FORMAT.md, "Packs"):
///
///     blob 0 | blob 1 | … | trailer entries (count × 48 bytes) | footer (16 bytes)
///
/// Trailer entry: id (32) | offset u32 | stored length u32 | raw length u32 | type u8 | codec u8 | 0 u16
/// Footer: entry count u32 | CRC-32 of the trailer entries u32 | magic "SMPACK01"
/// All integers little-endian.
public enum PackFormat {
    public static let entrySize = 48
    public static let footerSize = 16
    public static let magic = Array("SMPACK01".utf8)
    /// Packs are closed once they reach this size: big enough that a store of terabytes holds tens of
    /// thousands of files, not millions; small enough to repack cheaply (DESIGN.md §4: 16–64 MiB).
    public static let targetSize = 16 << 20

    static func encodeTrailer(_ entries: [BlobEntry]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(entries.count * entrySize + footerSize)
        for e in entries {
            out.append(e.id)
            out.appendLE32(e.offset)
            out.appendLE32(e.storedLength)
            out.appendLE32(e.rawLength)
            out.append(e.type.rawValue)
            out.append(e.codec.rawValue)
            out.append(0)
            out.append(0)
        }
        let crc = out.withUnsafeBytes { crc32(0, $0.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt($0.count)) }
        out.appendLE32(UInt32(entries.count))
        out.appendLE32(UInt32(crc))
        out.append(contentsOf: magic)
        return out
    }

    /// Parses the trailer from the tail of a pack file.
    /// - Parameters:
    ///   - tail: the last bytes of the pack; must include the whole trailer (call `trailerLength` first).
    ///   - packSize: size of the whole pack, to check that every blob lies inside it.
    static func decodeTrailer(_ tail: UnsafeRawBufferPointer, packSize: Int, pack: String) throws -> [BlobEntry] {
        let count = try entryCount(footer: tail, pack: pack)
        let trailerBytes = count * entrySize
        guard tail.count >= trailerBytes + footerSize else {
            throw StoreError.damagedPack(pack: pack, reason: "trailer length \(trailerBytes) exceeds the file")
        }
        let start = tail.count - footerSize - trailerBytes
        let trailer = UnsafeRawBufferPointer(rebasing: tail[start..<(tail.count - footerSize)])
        let crc = crc32(0, trailer.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(trailer.count))
        guard UInt32(crc) == tail.le32(tail.count - footerSize + 4) else {
            throw StoreError.damagedPack(pack: pack, reason: "trailer checksum mismatch")
        }
        let dataEnd = packSize - footerSize - trailerBytes
        var entries: [BlobEntry] = []
        entries.reserveCapacity(count)
        for i in 0..<count {
            let base = i * entrySize
            let typeByte = trailer[base + 44], codecByte = trailer[base + 45]
            guard let type = BlobType(rawValue: typeByte), let codec = Codec.Kind(rawValue: codecByte) else {
                throw StoreError.damagedPack(pack: pack, reason: "entry \(i) has unknown type \(typeByte) or codec \(codecByte)")
            }
            let entry = BlobEntry(
                id: ChunkID(bytes: UnsafeRawBufferPointer(rebasing: trailer[base..<base + 32])), type: type, codec: codec,
                offset: trailer.le32(base + 32), storedLength: trailer.le32(base + 36), rawLength: trailer.le32(base + 40))
            guard Int(entry.offset) + Int(entry.storedLength) <= dataEnd else {
                throw StoreError.damagedPack(pack: pack, reason: "entry \(i) points past the blob area")
            }
            // The type's own limit needs the store's chunker (`Store.checkBounds`); no type allows more
            // than a tree.
            guard entry.storedLength <= entry.rawLength, Int(entry.rawLength) <= Tree.maximumEncodedLength,
                entry.codec != .none || entry.storedLength == entry.rawLength
            else {
                throw StoreError.damagedPack(pack: pack, reason: "entry \(i) has stored length \(entry.storedLength) and raw length \(entry.rawLength), which no blob can have")
            }
            entries.append(entry)
        }
        return entries
    }

    /// The number of trailer entries, from the footer (the last 16 bytes).
    static func entryCount(footer tail: UnsafeRawBufferPointer, pack: String) throws -> Int {
        guard tail.count >= footerSize else { throw StoreError.damagedPack(pack: pack, reason: "shorter than its footer") }
        let magicStart = tail.count - 8
        guard Array(tail[magicStart...]) == magic else { throw StoreError.damagedPack(pack: pack, reason: "bad footer magic") }
        return Int(tail.le32(tail.count - footerSize))
    }
}
