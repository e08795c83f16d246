import Foundation

/// The record of one backup: written last, it is the commit point (docs/FORMAT.md, "Snapshots"). The file
/// is named by the SHA-256 of its bytes.
public struct SnapshotRecord: Codable, Sendable {
    /// The largest record a reader accepts: records hold a root tree id, statistics and the writers'
    /// documents (kilobytes); a longer file is damage, refused before it is read.
    public static let maximumLength = 16 << 20
    /// The record's format version (1).
    public var version: Int
    /// When the backup started.
    public var time: Date
    /// The host it ran on.
    public var hostname: String
    /// The user it ran as.
    public var username: String
    /// Absolute paths that were backed up.
    public var paths: [String]
    /// Root tree: the paths' directory structure from `/` down.
    public var tree: ChunkID
    /// Labels given with `--tag` or `tag`, used by retention rules.
    public var tags: [String]
    /// The version of ShadowMover that wrote it.
    public var programVersion: String
    /// What the backup read, added and stored.
    public var summary: BackupSummary
    /// The shadow copy session that produced the data (writers, backup components document, provider,
    /// freeze window); nil for a backup of live files. Opaque to the store.
    public var shadowCopy: JSONValue?

    /// A version-1 record without a shadow copy session.
    public init(
        time: Date, hostname: String, username: String, paths: [String], tree: ChunkID, tags: [String],
        programVersion: String, summary: BackupSummary
    ) {
        self.version = 1
        self.time = time
        self.hostname = hostname
        self.username = username
        self.paths = paths
        self.tree = tree
        self.tags = tags
        self.programVersion = programVersion
        self.summary = summary
    }
}

/// What a backup did; stored in its snapshot record and printed after it.
public struct BackupSummary: Codable, Sendable, Equatable {
    /// Regular files in the snapshot.
    public var files = 0
    /// Directories in the snapshot (the ones above the paths included).
    public var directories = 0
    /// Symlinks, FIFOs, sockets and devices.
    public var otherEntries = 0
    /// Bytes of file content read (logical size of the files backed up).
    public var bytesRead: UInt64 = 0
    /// Raw bytes of data chunks new to the store.
    public var bytesAdded: UInt64 = 0
    /// Bytes those new chunks take in packs after compression.
    public var bytesStored: UInt64 = 0
    /// Bytes of new tree blobs (directory metadata) in packs.
    public var treeBytesStored: UInt64 = 0
    /// Files whose chunk lists were taken from the parent snapshot without reading them (files cache).
    public var filesUnchanged = 0
    /// Their bytes.
    public var bytesUnchanged: UInt64 = 0
    /// Data chunks the files were cut into.
    public var chunks = 0
    /// Those the store did not have yet.
    public var chunksNew = 0
    /// Files and directories that could not be read (the backup went on without them).
    public var errors: [String] = []
    /// Wall time of the backup.
    public var durationSeconds: Double = 0

    /// An empty summary.
    public init() {}

    enum CodingKeys: String, CodingKey {
        case files, directories, otherEntries, bytesRead, bytesAdded, bytesStored, treeBytesStored, filesUnchanged, bytesUnchanged
        case chunks, chunksNew, errors, durationSeconds
    }

    /// Every field is optional on reading, so records from other versions of this format still load.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        files = try c.decodeIfPresent(Int.self, forKey: .files) ?? 0
        directories = try c.decodeIfPresent(Int.self, forKey: .directories) ?? 0
        otherEntries = try c.decodeIfPresent(Int.self, forKey: .otherEntries) ?? 0
        bytesRead = try c.decodeIfPresent(UInt64.self, forKey: .bytesRead) ?? 0
        bytesAdded = try c.decodeIfPresent(UInt64.self, forKey: .bytesAdded) ?? 0
        bytesStored = try c.decodeIfPresent(UInt64.self, forKey: .bytesStored) ?? 0
        treeBytesStored = try c.decodeIfPresent(UInt64.self, forKey: .treeBytesStored) ?? 0
        filesUnchanged = try c.decodeIfPresent(Int.self, forKey: .filesUnchanged) ?? 0
        bytesUnchanged = try c.decodeIfPresent(UInt64.self, forKey: .bytesUnchanged) ?? 0
        chunks = try c.decodeIfPresent(Int.self, forKey: .chunks) ?? 0
        chunksNew = try c.decodeIfPresent(Int.self, forKey: .chunksNew) ?? 0
        errors = try c.decodeIfPresent([String].self, forKey: .errors) ?? []
        durationSeconds = try c.decodeIfPresent(Double.self, forKey: .durationSeconds) ?? 0
    }

    /// Logical size of the files backed up: read, or unchanged and taken from the parent.
    public var bytesProcessed: UInt64 { bytesRead + bytesUnchanged }
    /// Logical bytes per byte of new data; nil when nothing new was added (everything deduplicated).
    public var dedupRatio: Double? { bytesAdded == 0 ? nil : Double(bytesProcessed) / Double(bytesAdded) }
    /// Raw bytes added per stored byte.
    public var compressionRatio: Double { bytesStored == 0 ? 1 : Double(bytesAdded) / Double(bytesStored) }
    /// Bytes processed per second of the backup's wall time.
    public var throughput: Double { durationSeconds > 0 ? Double(bytesProcessed) / durationSeconds : 0 }
}
