import Compression

/// Everything that can go wrong with a chunk store, phrased so a user knows what failed and what to do.
public enum StoreError: Error, CustomStringConvertible {
    case notAStore(path: String, reason: String)
    case alreadyExists(path: String)
    case newerFormat(path: String, found: Int, supported: Int)
    case io(path: String, operation: String, errno: Int32)
    case badConfig(path: String, reason: String)
    case snapshotNotFound(String)
    case snapshotAmbiguous(String, [String])
    case damagedSnapshot(id: String, reason: String)
    case damagedIndex(segment: String, reason: String)
    case damagedPack(pack: String, reason: String)
    case damagedBlob(id: ChunkID, pack: String, reason: String)
    case missingBlob(ChunkID)
    /// An object the store needs is not there (`key` as in docs/FORMAT.md, "Layout").
    case missingObject(String)
    /// An object longer than its kind may be (docs/FORMAT.md, "Validity rules").
    case tooLong(object: String, size: Int, limit: Int)
    case damagedTree(id: ChunkID, reason: String)
    case locked(String)
    /// Prune will not delete anything: `reason` says what it found, `fix` what to run.
    case pruneRefused(reason: String, fix: String)
    /// A snapshot record longer than a reader accepts.
    case recordTooLarge(bytes: Int, limit: Int)
    /// A key command on a store without encryption.
    case notEncrypted(location: String)
    /// A key slot id prefix that matches several slots.
    case ambiguousKeySlot(String)
    /// The index gained or lost entries while a merged segment was written.
    case indexChanged(written: Int, expected: Int)
    /// A blob copied between stores got another id: their chunk-id keys differ.
    case chunkIDKeysDiffer(blob: ChunkID, destinationID: ChunkID)
    /// A file in a snapshot that cannot be read as its tree entry says.
    case damagedFile(path: String, reason: String)
    /// An archive format that cannot hold an entry of this kind.
    case archiveCannotHold(path: String, kind: String, format: String)

    /// What went wrong, with the object and what to do.
    public var description: String {
        switch self {
        case .notAStore(let path, let reason):
            "\(path) is not a shadowmover store (\(reason)): check --store / SHADOWMOVER_STORE, or create one with `shadowmover init --store \(path)`"
        case .alreadyExists(let path):
            "a store already exists at \(path): choose another path, or use the existing store"
        case .newerFormat(let path, let found, let supported):
            "the store at \(path) has format version \(found), newer than this shadowmover supports (\(supported)): upgrade shadowmover"
        case .io(let path, let operation, let code) where code == ENOSPC || code == EDQUOT:
            "cannot \(operation) \(path): \(String(cString: strerror(code))) — free space and run the backup again; the packs this backup wrote are removed as it stops (any it had already indexed stay, unreferenced, until `shadowmover prune`)"
        case .io(let path, let operation, let code):
            "cannot \(operation) \(path): \(String(cString: strerror(code)))"
        case .badConfig(let path, let reason): "the store config \(path) is damaged: \(reason)"
        case .snapshotNotFound(let id):
            "no snapshot matches '\(id)': list them with `shadowmover snapshots`"
        case .snapshotAmbiguous(let id, let matches):
            "snapshot id '\(id)' is ambiguous (matches \(matches.map { String($0.prefix(12)) }.joined(separator: ", "))): give more digits"
        case .damagedSnapshot(let id, let reason): "snapshot record \(id) is damaged: \(reason)"
        case .damagedIndex(let segment, let reason): "index segment \(segment) is damaged: \(reason)"
        case .damagedPack(let pack, let reason): "pack \(pack) is damaged: \(reason)"
        case .damagedBlob(let id, let pack, let reason): "blob \(id) in pack \(pack) is damaged: \(reason)"
        case .missingBlob(let id): "blob \(id) is not in the store's index"
        case .missingObject(let key): "the store object \(key) is missing"
        case .tooLong(let object, let size, let limit): "the store object \(object) is damaged: it is \(size) bytes, more than the \(limit) it may have"
        case .damagedTree(let id, let reason): "tree \(id) is damaged: \(reason)"
        case .locked(let message): message
        case .pruneRefused(let reason, let fix): "refusing to prune: \(reason) — \(fix)"
        case .recordTooLarge(let bytes, let limit):
            "the snapshot record would be \(bytes) bytes, more than the \(limit) a reader accepts: select fewer writers' components or paths"
        case .notEncrypted(let location):
            "the store at \(location) is not encrypted: it has no keys (create an encrypted store with `shadowmover init`, without --no-encryption)"
        case .ambiguousKeySlot(let prefix): "key slot id '\(prefix)' is ambiguous: give more digits"
        case .indexChanged(let written, let expected):
            "the index changed while it was being rewritten (\(written) entries, expected \(expected)): nothing was deleted; run the command again"
        case .chunkIDKeysDiffer(let blob, let other):
            "blob \(blob.short) hashed to \(other.short) in the destination: the stores do not share their chunk-id key"
        case .damagedFile(let path, let reason): "\(path) cannot be read: \(reason)"
        case .archiveCannotHold(let path, let kind, let format): "a \(format) archive cannot hold \(path), a \(kind)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
