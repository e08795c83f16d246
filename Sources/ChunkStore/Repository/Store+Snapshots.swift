import Chunking
import Compression
import Crypto
import Foundation
import JSONFormat

/// Snapshot records: the commit points of backups.
extension Store {
    /// Writes a snapshot record: the commit point of a backup. Its id is the SHA-256 of the object as
    /// stored (sealed, in an encrypted store).
    public func saveSnapshot(_ record: SnapshotRecord) throws -> String {
        let bytes = Array(try JSONFormat.encoder().encode(record))
        guard bytes.count <= SnapshotRecord.maximumLength else {
            throw StoreError.recordTooLarge(bytes: bytes.count, limit: SnapshotRecord.maximumLength)
        }
        let stored = cipher.sealObject(bytes, kind: .snapshot)
        let id = ChunkID(hashing: stored).hex
        try backend.put(ObjectKey.snapshot(id), stored)
        return id
    }

    /// The ids of every snapshot record (unread).
    public func snapshotIDs() throws -> [String] { try backend.names(ObjectKey.snapshots) }

    /// Loads a snapshot record and checks that its bytes match its id.
    public func loadSnapshot(id: String) throws -> SnapshotRecord {
        let stored: [UInt8]
        do {
            guard let b = try backend.get(ObjectKey.snapshot(id), limit: SnapshotRecord.maximumLength + cipher.objectOverhead) else {
                throw StoreError.damagedSnapshot(id: id, reason: "it is missing")
            }
            stored = b
        } catch StoreError.tooLong(_, let size, let limit) {
            throw StoreError.damagedSnapshot(id: id, reason: "it is \(size) bytes, more than the \(limit) it may have")
        }
        guard ChunkID(hashing: stored).hex == id else { throw StoreError.damagedSnapshot(id: id, reason: "checksum mismatch") }
        let bytes: [UInt8]
        do { bytes = try cipher.openObject(stored, kind: .snapshot) } catch {
            throw StoreError.damagedSnapshot(id: id, reason: "\(error)")
        }
        do {
            return try JSONFormat.decoder().decode(SnapshotRecord.self, from: Data(bytes))
        } catch {
            throw StoreError.damagedSnapshot(id: id, reason: "not a valid record: \(error)")
        }
    }

    /// Every snapshot, oldest first, and the records that could not be read.
    public func snapshots() throws -> (records: [(id: String, record: SnapshotRecord)], damaged: [StoreError]) {
        var records: [(id: String, record: SnapshotRecord)] = []
        var damaged: [StoreError] = []
        for id in try snapshotIDs() {
            do { records.append((id, try loadSnapshot(id: id))) } catch { damaged.append(error as? StoreError ?? .damagedSnapshot(id: id, reason: "\(error)")) }
        }
        records.sort { $0.record.time < $1.record.time }
        return (records, damaged)
    }

    /// Finds a snapshot by id prefix, or `latest`.
    public func resolveSnapshot(_ text: String) throws -> (id: String, record: SnapshotRecord) {
        if text == "latest" {
            let all = try snapshots()
            guard let last = all.records.last else {
                if let damaged = all.damaged.first { throw damaged }
                throw StoreError.snapshotNotFound(text)
            }
            return last
        }
        let matches = try snapshotIDs().filter { $0.hasPrefix(text.lowercased()) }
        guard !text.isEmpty, !matches.isEmpty else { throw StoreError.snapshotNotFound(text) }
        guard matches.count == 1 else { throw StoreError.snapshotAmbiguous(text, matches) }
        return (matches[0], try loadSnapshot(id: matches[0]))
    }
}
