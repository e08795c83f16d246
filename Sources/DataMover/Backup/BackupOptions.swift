import ChunkStore
import Compression
import Foundation

/// What to back up and how.
public struct BackupOptions: Sendable {
    /// The paths to back up, as given (made absolute and cleaned by the backup).
    public var paths: [String]
    /// Do not descend into directories on another filesystem than the path they were found under.
    public var oneFileSystem = false
    /// Chunk/hash/compress workers; one per core by default.
    public var workers = ProcessInfo.processInfo.activeProcessorCount
    /// Codec for new blobs; the store's default when nil.
    public var codec: Codec?
    /// Labels for the snapshot record.
    public var tags: [String] = []
    /// The host the snapshot record names (default: this one's short name).
    public var hostname = ProcessInfo.processInfo.hostName
    /// Where and how often reports of where the backup stands go (nil: no reports).
    public var progress: ProgressSink?
    /// Read every file, even those the parent snapshot shows unchanged.
    public var force = false
    /// The snapshot whose trees serve as the files cache (nil: the latest with the same paths and host).
    public var parent: String?
    /// Where to read the data from when it is not the live filesystem (a shadow copy).
    public var source = BackupSource()
    /// Paths never backed up (e.g. the shadow copies' own directories).
    public var excludedPaths: Set<String> = []
    /// Name patterns excluded below a directory (a writer's exclude list).
    public var excludeRules: [ExcludeRule] = []
    /// Called once the data is stored, before the snapshot record is written: the shadow copy session's
    /// document to keep in the record (writers, components and their results, freeze window).
    public var shadowCopy: (@Sendable (BackupSummary) -> JSONValue?)?

    /// Options for a backup of `paths`.
    public init(paths: [String]) { self.paths = paths }
}

/// Where a backup reads each path from. The snapshot records the original paths; the bytes and
/// metadata come from the shadow copy.
public struct BackupSource: Sendable {
    /// Subtrees read from elsewhere (a btrfs snapshot): original path → path to read.
    public var subtrees: [(original: String, read: String)] = []
    /// Single files read from elsewhere (reflink clones, copies), with their metadata at freeze time.
    public var files: [String: CapturedMetadata] = [:]
    /// Writers' component files on volumes captured file by file: a live file matching one of these that
    /// is not in `files` did not exist at the freeze point, and is left out (never read live).
    public var capturedOnly: [ExcludeRule] = []
    /// Files a writer says come and go (SQLite's -wal, -shm, -journal): one that vanishes while it is
    /// read live is left out without a warning.
    public var transient: [ExcludeRule] = []

    /// Every selected writer component's files (any provider): files written while they are backed up.
    public var components: [ExcludeRule] = []

    func isComponentFile(_ path: String) -> Bool { components.contains { $0.matches(path) } }

    /// True when `path` (not a directory) is a component file that was not there at the freeze point.
    func absentAtFreeze(_ path: String) -> Bool {
        files[path] == nil && capturedOnly.contains { $0.matches(path) }
    }

    /// True when `path` may vanish without it being worth a warning.
    func mayVanish(_ path: String) -> Bool { transient.contains { $0.matches(path) } }

    /// The names of the captured files in each directory (by original path). A directory is listed
    /// live and these are added: a file that was there at the freeze and is gone now (an SQLite -wal
    /// its last connection removed after the thaw) is part of the point in time all the same.
    func capturedNames() -> [String: [[UInt8]]] {
        var names: [String: [[UInt8]]] = [:]
        for path in files.keys {
            let bytes = PathBytes(path)
            guard let name = bytes.components.last else { continue }
            names[(path as NSString).deletingLastPathComponent, default: []].append(name)
        }
        return names
    }

    /// Live files only: nothing mapped, nothing captured.
    public init() {}

    /// A file a provider captured at the freeze: where to read it and its metadata at that moment.
    public struct CapturedMetadata: @unchecked Sendable {  // `stat` is a plain C struct
        /// The path to read its content from.
        public var read: String
        /// Its stat at the freeze.
        public var stat: stat
        /// The extended attributes at the freeze (a clone carries none of its original's).
        public var xattrs: [ExtendedAttribute]
        /// A captured file read at `read`.
        public init(read: String, stat: stat, xattrs: [ExtendedAttribute]) {
            self.read = read
            self.stat = stat
            self.xattrs = xattrs
        }
    }

    /// The path to read for an original path, and the original root of the subtree it was mapped by.
    func resolve(_ original: PathBytes) -> (read: PathBytes, mappedFrom: String?) {
        guard !subtrees.isEmpty else { return (original, nil) }
        let text = original.description
        var best: (original: String, read: String)?
        for s in subtrees where text == s.original || text.hasPrefix(s.original == "/" ? "/" : s.original + "/") {
            if best == nil || s.original.count > best!.original.count { best = s }
        }
        guard let best else { return (original, nil) }
        return (PathBytes(best.read + String(text.dropFirst(best.original == "/" ? 0 : best.original.count))), best.original)
    }
}

/// Excludes names matching `pattern` (fnmatch) in `directory`, and below it when `recursive`.
public struct ExcludeRule: Sendable {
    /// The directory the rule applies in.
    public var directory: String
    /// The fnmatch pattern names are matched against.
    public var pattern: String
    /// Whether the rule applies below `directory` too.
    public var recursive: Bool
    /// A rule for `pattern` in `directory`.
    public init(directory: String, pattern: String, recursive: Bool) {
        self.directory = directory
        self.pattern = pattern
        self.recursive = recursive
    }

    func matches(_ path: String) -> Bool {
        let slash = path.lastIndex(of: "/") ?? path.startIndex
        let dir = slash == path.startIndex ? "/" : String(path[..<slash])
        let name = String(path[path.index(after: slash)...])
        let inside = recursive ? (directory == "/" || dir == directory || dir.hasPrefix(directory + "/")) : dir == directory
        return inside && fnmatch(pattern, name, 0) == 0
    }
}

/// The outcome of a backup that committed a snapshot.
public struct BackupResult: Sendable {
    /// The snapshot's id (the hash of its record).
    public var snapshotID: String
    /// The record as written.
    public var record: SnapshotRecord
    /// Files and directories that could not be read (exit code 3).
    public var errors: [String] { record.summary.errors }
}

/// Why a backup could not start.
public enum BackupError: Error, CustomStringConvertible {
    case pathMissing(String, String)
    case noPaths

    /// The reason and what to do about it.
    public var description: String {
        switch self {
        case .pathMissing(let path, let reason):
            "cannot back up \(path): \(reason) — check the path"
        case .noPaths: "no paths to back up: name at least one file or directory"
        }
    }
}
