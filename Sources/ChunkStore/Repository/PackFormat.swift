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
    /// Bytes per trailer entry.
    public static let entrySize = 48
    /// Bytes of the footer (entry count, trailer CRC, magic).
    public static let footerSize = 16
    /// The footer's last bytes.
    public static let magic = Array("SMPACK01".utf8)
    /// Packs are closed once they reach this size: big enough that a store of terabytes holds tens of
    /// thousands of files, not millions; small enough to repack cheaply (DESIGN.md §4: 16–64 MiB).
    public static let targetSize = 16 << 20

    /// The footer magic of an encrypted pack (store version 3), whose footer's first field is the
    /// sealed trailer's length instead of the entry count.
    public static let sealedMagic = Array("SMPACK02".utf8)

    /// The trailer and footer of a pack holding `entries`: plaintext with a CRC (store version 2), or
    /// sealed under the pack's trailer key (version 3).
    static func encodeTrailer(_ entries: [BlobEntry], pack: ChunkID, cipher: StoreCipher) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(entries.count * entrySize + footerSize + StoreCipher.tagLength)
        for e in entries {
            out.append(e.id)
            e.appendPlacement(to: &out)
        }
        if cipher.isEncrypted {
            out = cipher.sealTrailer(out, pack: pack)
            out.appendLE32(UInt32(out.count))
            out.appendLE32(0)
            out.append(contentsOf: sealedMagic)
            return out
        }
        let crc = out.withUnsafeBytes { crc32(0, $0.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt($0.count)) }
        out.appendLE32(UInt32(entries.count))
        out.appendLE32(UInt32(crc))
        out.append(contentsOf: magic)
        return out
    }

    /// How long the trailer and footer are, from the footer (the last 16 bytes), checked against the
    /// pack's size and the store's kind: a plaintext store has plaintext packs, an encrypted one sealed packs.
    static func tailLength(footer tail: UnsafeRawBufferPointer, packSize: Int, pack: String, encrypted: Bool) throws -> Int {
        guard tail.count >= footerSize else { throw StoreError.damagedPack(pack: pack, reason: "shorter than its footer") }
        let found = Array(tail[(tail.count - 8)...])
        guard found == (encrypted ? sealedMagic : magic) else {
            if found == magic || found == sealedMagic {
                throw StoreError.damagedPack(
                    pack: pack, reason: encrypted ? "it is not encrypted, in an encrypted store" : "it is encrypted, in a store without encryption")
            }
            throw StoreError.damagedPack(pack: pack, reason: "bad footer magic")
        }
        let first = Int(tail.le32(tail.count - footerSize))
        let length: Int
        if encrypted {
            guard first >= StoreCipher.tagLength, (first - StoreCipher.tagLength) % entrySize == 0 else {
                throw StoreError.damagedPack(pack: pack, reason: "sealed trailer length \(first) is not a whole number of entries")
            }
            length = first + footerSize
        } else {
            length = first * entrySize + footerSize
        }
        guard length <= packSize else { throw StoreError.damagedPack(pack: pack, reason: "trailer longer than the pack") }
        return length
    }

    /// Parses the trailer from the tail of a pack file (the whole of `tailLength`'s bytes).
    /// - Parameters:
    ///   - packSize: size of the whole pack, to check that every blob lies inside it.
    static func decodeTrailer(_ tail: UnsafeRawBufferPointer, packSize: Int, pack id: ChunkID, cipher: StoreCipher) throws -> [BlobEntry] {
        let pack = id.hex
        let body = UnsafeRawBufferPointer(rebasing: tail[..<(tail.count - footerSize)])
        let entriesBytes: [UInt8]
        if cipher.isEncrypted {
            do { entriesBytes = try cipher.openTrailer(body, pack: id) } catch {
                throw StoreError.damagedPack(pack: pack, reason: "its trailer: \(error)")
            }
        } else {
            let crc = crc32(0, body.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(body.count))
            guard UInt32(crc) == tail.le32(tail.count - footerSize + 4) else {
                throw StoreError.damagedPack(pack: pack, reason: "trailer checksum mismatch")
            }
            entriesBytes = Array(body)
        }
        let count = entriesBytes.count / entrySize
        let dataEnd = packSize - tail.count
        let seal = cipher.blobOverhead
        return try entriesBytes.withUnsafeBytes { trailer in
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
                guard Int(entry.storedLength) <= Int(entry.rawLength) + seal, Int(entry.rawLength) <= Tree.maximumEncodedLength,
                    entry.codec != .none || Int(entry.storedLength) == Int(entry.rawLength) + seal
                else {
                    throw StoreError.damagedPack(
                        pack: pack, reason: "entry \(i) has stored length \(entry.storedLength) and raw length \(entry.rawLength), which no blob can have")
                }
                entries.append(entry)
            }
            return entries
        }
    }

}
