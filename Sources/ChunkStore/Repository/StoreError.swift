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
    case refused(String)

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
        case .refused(let message): message
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
