import Chunking
import Compression
import Crypto
import Foundation
import JSONFormat

/// Reading blobs: bounds first, then the bytes, then decryption, decompression and the hash check.
extension Store {
    /// Checks `location` against the format's bounds before anything is allocated or read for it: the
    /// raw length within the limit for its type (`BlobType.maximumRawLength`), the stored length no
    /// larger than the raw one (a compressed blob is always smaller, docs/FORMAT.md), the stored bytes
    /// inside the pack file, and the type the caller expects. A store is input: a crafted index entry
    /// must cost a damage report, not gigabytes of memory.
    /// - Returns: the raw length.
    public func checkBounds(_ location: BlobLocation, expecting type: BlobType? = nil) throws -> Int {
        let e = location.entry
        func damaged(_ reason: String) -> StoreError { .damagedBlob(id: e.id, pack: location.pack.hex, reason: reason) }
        if let type, e.type != type { throw damaged("it is a \(e.type.name) blob where a \(type.name) blob belongs") }
        let limit = e.type.maximumRawLength(chunkerMaximum: config.chunker.maxSize)
        guard Int(e.rawLength) <= limit else { throw damaged("raw length \(e.rawLength) exceeds the \(limit) a \(e.type.name) blob may have") }
        let seal = cipher.blobOverhead
        guard Int(e.storedLength) <= Int(e.rawLength) + seal else {
            throw damaged("stored length \(e.storedLength) exceeds its raw length \(e.rawLength)\(seal > 0 ? " and its \(seal)-byte tag" : "")")
        }
        if e.codec == .none && Int(e.storedLength) != Int(e.rawLength) + seal {
            throw damaged(
                "an uncompressed blob whose stored length \(e.storedLength) is not its raw length \(e.rawLength)\(seal > 0 ? " and its \(seal)-byte tag" : "")")
        }
        let packSize = try packSizes.size(of: location.pack, in: backend)
        guard Int(e.offset) + Int(e.storedLength) <= packSize else {
            throw damaged("bytes \(e.offset)..<\(Int(e.offset) + Int(e.storedLength)) lie past the end of the pack (\(packSize) bytes)")
        }
        return Int(e.rawLength)
    }

    /// Reads, decompresses and verifies a blob into `destination` (exactly `location.entry.rawLength` bytes).
    /// `scratch` holds the stored bytes; it is grown as needed and may be reused across calls.
    public func readBlob(
        _ location: BlobLocation, expecting type: BlobType? = nil, into destination: UnsafeMutableRawBufferPointer,
        scratch: inout [UInt8], compressor: Compressor
    ) throws {
        try readUncheckedBlob(location, expecting: type, into: destination, scratch: &scratch, compressor: compressor)
        try verify([(UnsafeRawBufferPointer(destination), location)])
    }

    /// `readBlob` but for the hash check, which the caller makes before it uses the bytes (`verify`:
    /// several blobs at once).
    public func readUncheckedBlob(
        _ location: BlobLocation, expecting type: BlobType? = nil, into destination: UnsafeMutableRawBufferPointer,
        scratch: inout [UInt8], compressor: Compressor
    ) throws {
        let e = location.entry
        let packName = location.pack.hex
        guard try checkBounds(location, expecting: type) == destination.count else {
            throw StoreError.damagedBlob(id: e.id, pack: packName, reason: "raw length \(e.rawLength) differs from the \(destination.count) bytes expected")
        }
        let stored = Int(e.storedLength)
        if scratch.count < stored { scratch = [UInt8](repeating: 0, count: stored) }
        let got = try scratch.withUnsafeMutableBytes { (b: UnsafeMutableRawBufferPointer) throws -> Int in
            try readPack(location.pack, at: Int(e.offset), into: UnsafeMutableRawBufferPointer(rebasing: b[..<stored]))
        }
        guard got == stored else {
            throw StoreError.damagedBlob(id: e.id, pack: packName, reason: "pack is truncated")
        }
        try scratch.withUnsafeBytes {
            try openUncheckedBlob(UnsafeRawBufferPointer(rebasing: $0[..<stored]), location, into: destination, compressor: compressor)
        }
    }

    /// Opens a blob already read from its pack (`stored`: its `storedLength` bytes): decrypts,
    /// decompresses and verifies it into `destination` (exactly `rawLength` bytes, bounds checked by
    /// the caller with `checkBounds`).
    public func openBlob(
        _ stored: UnsafeRawBufferPointer, _ location: BlobLocation, into destination: UnsafeMutableRawBufferPointer, compressor: Compressor
    ) throws {
        try openUncheckedBlob(stored, location, into: destination, compressor: compressor)
        try verify([(UnsafeRawBufferPointer(destination), location)])
    }

    /// `openBlob` but for the hash check (`verify`).
    public func openUncheckedBlob(
        _ stored: UnsafeRawBufferPointer, _ location: BlobLocation, into destination: UnsafeMutableRawBufferPointer, compressor: Compressor
    ) throws {
        let e = location.entry
        do {
            try cipher.openBlob(stored, pack: location.pack, entry: e) { plain in
                try compressor.decompress(plain, kind: e.codec, into: destination)
            }
        } catch {
            throw StoreError.damagedBlob(id: e.id, pack: location.pack.hex, reason: "\(error)")
        }
    }

    /// A blob's raw bytes as opened (`openUncheckedBlob`), with where it came from.
    public typealias OpenedBlob = (raw: UnsafeRawBufferPointer, location: BlobLocation)

    /// Checks that each blob's raw bytes hash to its id, hashing them two at a time (about a third
    /// less work than one after the other). Throws for the first that does not.
    public func verify(_ blobs: [OpenedBlob]) throws {
        for (id, blob) in zip(cipher.blobIDs(blobs.map(\.raw)), blobs) where id != blob.location.entry.id {
            throw StoreError.damagedBlob(
                id: blob.location.entry.id, pack: blob.location.pack.hex,
                reason: "content does not match its \(cipher.isEncrypted ? "keyed hash" : "SHA-256")")
        }
    }

    /// Tells the backend that the blobs `ids` will be read soon (restore's look-ahead), as the byte
    /// ranges of each pack, sorted and without repeats; the backend merges neighbours as suits it.
    /// Unknown ids are left for the read to report.
    public func prefetch<C: Collection>(_ ids: C) where C.Element == ChunkID {
        var ranges: [ChunkID: [Range<Int>]] = [:]
        for id in ids {
            guard let l = index.lookup(id) else { continue }
            ranges[l.pack, default: []].append(Int(l.entry.offset)..<Int(l.entry.offset) + Int(l.entry.storedLength))
        }
        for (pack, list) in ranges {
            var sorted: [Range<Int>] = []
            for r in list.sorted(by: { $0.lowerBound < $1.lowerBound }) where sorted.last != r { sorted.append(r) }
            backend.prefetch(ObjectKey.pack(pack), ranges: sorted)
        }
    }

    /// Reads and verifies a whole blob (trees, tools). Data restore uses the buffer-reusing variant.
    /// `location` saves the index lookup when the caller already knows where the blob is.
    public func loadBlob(_ id: ChunkID, at known: BlobLocation? = nil, expecting type: BlobType? = nil) throws -> [UInt8] {
        guard let location = known ?? index.lookup(id) else { throw StoreError.missingBlob(id) }
        var out = [UInt8](repeating: 0, count: try checkBounds(location, expecting: type))
        var scratch: [UInt8] = []
        let compressor = Compressor(codec: .none)
        try out.withUnsafeMutableBytes { (d: UnsafeMutableRawBufferPointer) throws in
            try readBlob(location, expecting: type, into: d, scratch: &scratch, compressor: compressor)
        }
        return out
    }

    /// Loads and decodes a tree (from `location` when the caller knows where it is).
    public func loadTree(_ id: ChunkID, at location: BlobLocation? = nil) throws -> Tree {
        let bytes: [UInt8]
        do {
            bytes = try loadBlob(id, at: location, expecting: .tree)
        } catch StoreError.damagedBlob(_, _, let reason) {
            throw StoreError.damagedTree(id: id, reason: reason)
        } catch StoreError.missingBlob {
            throw StoreError.damagedTree(id: id, reason: "it is not in the index")
        }
        do {
            return try Tree.decode(bytes)
        } catch {
            throw StoreError.damagedTree(id: id, reason: "not a valid tree: \(error)")
        }
    }
}
