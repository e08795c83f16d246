import ChunkStore
import Foundation

/// What to restore and where.
public struct RestoreOptions: Sendable {
    /// The directory to restore into (made when missing; empty unless `overwrite`).
    public var target: String
    /// Restore only this path of the snapshot (absolute, as backed up); it is placed in the target under
    /// its own name.
    public var subPath: String?
    /// Allow a non-empty target; existing files in the way are replaced.
    public var overwrite = false
    /// Restore every file that does not touch a damaged object, and report the rest.
    public var skipDamaged = false
    /// Threads writing file contents (the CLI's default: `Store.readers`).
    public var workers = ProcessInfo.processInfo.activeProcessorCount
    /// Decompressed chunks held in memory between their uses, at most (a chunk used again that finds
    /// no room is read back from the file it was first restored to).
    public var sharedChunkBytes = 16 << 20
    /// Where and how often reports of where the restore stands go (nil: none).
    public var progress: ProgressSink?

    /// Options for a restore into `target`.
    public init(target: String) { self.target = target }
}

/// What a restore did.
public struct RestoreSummary: Sendable, Codable {
    /// Regular files restored (hard links included).
    public var files = 0
    /// Directories made.
    public var directories = 0
    /// Symlinks, FIFOs, devices (and sockets left out).
    public var otherEntries = 0
    /// Bytes of file content written (holes excluded).
    public var bytesWritten: UInt64 = 0
    /// Bytes of those written from a copy of a chunk already read for another place in the restore
    /// (a chunk several files or places share is read, decompressed and verified once).
    public var bytesReused: UInt64 = 0
    /// Wall time of the restore.
    public var durationSeconds: Double = 0
    /// Damaged or missing objects and the files they made unrestorable (with `skipDamaged`).
    public var damage: [DamageReport] = []
    /// Metadata that could not be applied (e.g. ownership without root), one message each.
    public var warnings: [String] = []
}

/// A damaged object and the restored paths it affects.
public struct DamageReport: Sendable, Codable, CustomStringConvertible {
    /// The damaged object, as a user finds it ("blob … in pack …", "tree …").
    public var object: String
    /// What is wrong with it.
    public var reason: String
    /// The restored paths it affects.
    public var affectedFiles: [String]
    /// The damaged or missing blob, when the object is one (restore then names every planned file
    /// that uses it, not only those a worker reached).
    public var blob: ChunkID?

    /// A report of `object`.
    public init(object: String, reason: String, affectedFiles: [String], blob: ChunkID? = nil) {
        self.object = object
        self.reason = reason
        self.affectedFiles = affectedFiles
        self.blob = blob
    }

    /// The object, the reason, and the files affected.
    public var description: String {
        "\(object) is damaged (\(reason)); affected: " + (affectedFiles.isEmpty ? "nothing restored" : affectedFiles.joined(separator: ", "))
    }
}

/// Why a restore stopped.
public enum RestoreError: Error, CustomStringConvertible {
    case targetNotEmpty(String)
    case pathNotInSnapshot(String)
    case damaged([DamageReport])
    case damagedIndex([DamageReport])
    case target(String)
    /// `restore --component`: no such component in the snapshot (the message says what it holds).
    case componentNotFound(String)
    /// `restore --component`: the component cannot be restored as asked (the message says why and what to do).
    case componentUnsupported(String)

    /// The reason and what to do about it.
    public var description: String {
        switch self {
        case .targetNotEmpty(let t): "the target \(t) is not empty: choose an empty directory, or pass --overwrite"
        case .pathNotInSnapshot(let p): "\(p) is not in the snapshot: list its contents with `shadowmover ls`"
        case .damaged(let reports):
            "the snapshot refers to damaged data:\n" + reports.map { "  " + $0.description }.joined(separator: "\n")
                + "\nrestore the other files with --skip-damaged"
        case .damagedIndex(let reports):
            reports.map(\.description).joined(separator: "\n")
                + "\nrebuild the index from the packs with `shadowmover repair index`, or restore what can be found with --skip-damaged"
        case .target(let m): m
        case .componentNotFound(let m): m
        case .componentUnsupported(let m): m
        }
    }
}
