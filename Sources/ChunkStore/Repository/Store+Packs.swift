import Compression
import Foundation

// MARK: Packs and index repair

extension Store {
    /// Every pack id in the store (one listing).
    public func packIDs() throws -> [ChunkID] {
        try backend.list(ObjectKey.packs).compactMap { ChunkID(hex: String($0.split(separator: "/").last ?? "")) }
    }

    /// A pack's size in bytes.
    public func packSize(_ id: ChunkID) throws -> Int { try packSizes.size(of: id, in: backend) }

    /// Reads bytes of a pack from `offset`. - Returns: the bytes read.
    public func readPack(_ id: ChunkID, at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        do {
            return try backend.read(ObjectKey.pack(id), at: offset, into: buffer)
        } catch StoreError.missingObject {
            throw StoreError.damagedPack(pack: id.hex, reason: "the pack file is missing")
        }
    }

    /// Reads and checks a pack's trailer: the list of its blobs (opened, in an encrypted store).
    public func readPackTrailer(_ id: ChunkID) throws -> [BlobEntry] {
        let size = try packSizes.size(of: id, in: backend)
        var footer = [UInt8](repeating: 0, count: min(size, PackFormat.footerSize))
        _ = try footer.withUnsafeMutableBytes { try readPack(id, at: size - $0.count, into: $0) }
        let tailLength = try footer.withUnsafeBytes {
            try PackFormat.tailLength(footer: $0, packSize: size, pack: id.hex, encrypted: cipher.isEncrypted)
        }
        var tail = [UInt8](repeating: 0, count: tailLength)
        let got = try tail.withUnsafeMutableBytes { try readPack(id, at: size - tailLength, into: $0) }
        guard got == tailLength else { throw StoreError.damagedPack(pack: id.hex, reason: "shorter than its size") }
        return try tail.withUnsafeBytes { try PackFormat.decodeTrailer($0, packSize: size, pack: id, cipher: cipher) }
    }

    /// Removes a pack (prune: only packs no snapshot references, under the exclusive lock).
    func deletePack(_ id: ChunkID) throws {
        packSizes.forget(id)
        try backend.delete(ObjectKey.pack(id))
    }

    /// Rebuilds the index from the packs' trailers: writes one new segment listing every blob of every
    /// readable pack, then removes the old segments (damaged ones included). Safe to interrupt: until
    /// the old segments are gone, both describe the same blobs. Takes the exclusive lock: a backup
    /// writing packs meanwhile would have its new segment deleted.
    /// A trailer's lengths are checked against its pack and the format's limits; with `readData`, every
    /// blob is also read and its hash verified before it is indexed (a trailer whose CRC matches can
    /// still lie), and blobs that fail are left out and reported.
    /// - Returns: the number of packs and blobs indexed, and what was left out: damaged packs (their
    ///   trailers) and, with `readData`, damaged blobs.
    public func rebuildIndex(readData: Bool = false) throws -> (packs: Int, blobs: Int, damagedPacks: [String]) {
        let lock = try StoreLock.acquire(self, exclusive: true, purpose: "repair index")
        defer { lock.release() }
        var locations: [BlobLocation] = []
        var damaged: [String] = []
        var packs = 0
        let compressor = Compressor(codec: .none)
        var scratch: [UInt8] = [], buffer: [UInt8] = []
        for id in try packIDs() {
            do {
                for e in try readPackTrailer(id) {
                    let location = BlobLocation(pack: id, entry: e)
                    if readData {
                        do {
                            let length = try checkBounds(location)
                            if buffer.count < length { buffer = [UInt8](repeating: 0, count: length) }
                            try buffer.withUnsafeMutableBytes { b in
                                try readBlob(location, into: UnsafeMutableRawBufferPointer(rebasing: b[..<length]), scratch: &scratch, compressor: compressor)
                            }
                        } catch {
                            damaged.append("\(error)")
                            continue
                        }
                    }
                    locations.append(location)
                }
                packs += 1
            } catch {
                damaged.append("\(error)")
            }
        }
        let old = try backend.names(ObjectKey.segments)
        var newName: String?
        if !locations.isEmpty {
            let (name, bytes) = IndexSegment.encode(locations)
            newName = try writeSegment { directory in
                try FileIO.writeAtomically(directory: directory, name: name, bytes: bytes)
                return name
            }
        }
        for name in old where name != newName { try backend.delete(ObjectKey.segment(name)) }
        return (packs, locations.count, damaged)
    }
}

// MARK: Index compaction

extension Store {
    /// More segments than this are merged into one after a backup: every lookup searches each segment.
    public static let maximumIndexSegments = 16

    /// Merges the index segments into one when there are too many. The merged segment is written
    /// before the old ones are removed, so an interruption leaves a valid (if redundant) index.
    func compactIndexIfNeeded() throws {
        let segments = index.segments
        guard segments.count > Self.maximumIndexSegments else { return }
        guard let name = try writeSegment({ try IndexSegment.writeMerged(segments, into: $0)?.name }) else { return }
        index.replaceSegments(segments, with: try openWrittenSegment(name))
        for s in segments where s.name != name { try backend.delete(ObjectKey.segment(s.name)) }
    }
}

extension Store {
    /// Removes a snapshot record (the data stays until prune).
    public func deleteSnapshot(id: String) throws {
        try backend.delete(ObjectKey.snapshot(id))
    }

    /// An object's bytes as stored, for `inspect cat` (config and snapshot records).
    public func rawObject(_ key: String, limit: Int) throws -> [UInt8] {
        guard let bytes = try backend.get(key, limit: limit) else { throw StoreError.missingObject(key) }
        return bytes
    }
}
