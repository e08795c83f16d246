import Foundation

/// How a volume's shadow copy is made (DESIGN.md §3).
public enum ProviderKind: String, Codable, Sendable, CaseIterable {
    /// Read-only btrfs snapshot of the subvolume(s) holding the data: atomic, O(1).
    case btrfs
    /// FICLONE of each file into a hidden directory on the same filesystem: O(files).
    case reflink
    /// Plain copy of the selected writers' files while frozen: O(bytes), the loud fallback.
    case copy
    /// No shadow copy: the data is read live (not point-in-time).
    case none
}

/// The snapshot properties of one volume's shadow copy (VSS's `VSS_SNAPSHOT_PROP`).
public struct ShadowCopyProperties: Codable, Sendable {
    /// The shadow copy's id.
    public var snapshotID: String
    /// The set it belongs to.
    public var setID: String
    /// The volume it copies.
    public var volume: Volume
    /// Root of the shadow copy (a snapshot subvolume's parent directory, or the clone directory).
    public var snapshotPath: String
    /// How it was made.
    public var provider: ProviderKind
    /// When.
    public var created: Date
    /// On which host.
    public var host: String
    /// btrfs: the snapshot subvolumes created (original subvolume root → snapshot path).
    public var subvolumes: [String: String]
    /// Warnings a user should see (nested subvolumes, files read live).
    public var warnings: [String]
}

/// A file captured by a reflink or copy provider: where its frozen content is, and the metadata and
/// extended attributes it had at the freeze (a clone carries no xattrs, and the original may be gone
/// or changed by the time it is read).
public struct CapturedFile: Sendable {
    /// Where its content is read (a clone or copy made at the freeze).
    public var shadowPath: String
    /// Its metadata at the freeze.
    public var stat: stat
    /// Its extended attributes at the freeze.
    public var xattrs: [(name: String, value: [UInt8])]
}

/// One volume's part of a shadow copy set while it is being built.
public final class VolumePlan: @unchecked Sendable {  // used by one coordinator thread at a time
    /// The volume.
    public let volume: Volume
    /// The provider chosen for it.
    public var provider: ProviderKind
    /// Backup paths on this volume (real paths).
    public var paths: [String] = []
    /// The selected writer components' file descriptors whose directories are on this volume (real
    /// paths), and the writers' excludes: matched at commit, inside the freeze.
    public var componentSpecs: [FileDescriptor] = []
    var componentExcludes: [FileDescriptor] = []
    /// Filled by prepare (reflink): the other files under the backup paths that commit will clone.
    var filesToCapture: [String] = []
    /// Filled by commit (reflink, copy): the component files that existed at the freeze and were captured.
    public internal(set) var capturedComponentFiles: [String] = []
    /// Filled by prepare (btrfs): subvolume roots to snapshot.
    var subvolumeRoots: [String] = []
    /// Set once the shadow copy exists.
    public internal(set) var properties: ShadowCopyProperties?
    /// Filled by commit (reflink, copy).
    public internal(set) var captured: [String: CapturedFile] = [:]

    init(volume: Volume, provider: ProviderKind) {
        self.volume = volume
        self.provider = provider
    }

    /// `<mount point>/.shadowmover-shadows`: the hidden directory shadow copies of this volume live in.
    public var shadowDirectory: String { Self.shadowDirectory(of: volume) }

    /// The hidden directory on `volume` where its clones and copies are made.
    public static func shadowDirectory(of volume: Volume) -> String {
        (volume.mountPoint == "/" ? "" : volume.mountPoint) + "/.shadowmover-shadows"
    }
}

/// Makes and deletes shadow copies of one kind.
protocol Provider: Sendable {
    var kind: ProviderKind { get }
    /// Outside the freeze window: check the volume, find what to capture, create directories.
    func prepare(_ plan: VolumePlan, setID: String, snapshotID: String) throws
    /// Inside the freeze window: capture, and stop at `deadline`.
    func commit(_ plan: VolumePlan, deadline: ContinuousClock.Instant) throws
    /// Deletes a shadow copy (also one left behind by a killed agent).
    func delete(_ properties: ShadowCopyProperties) throws
}

enum Providers {
    static func make(_ kind: ProviderKind) -> Provider {
        switch kind {
        case .btrfs: BtrfsProvider()
        case .reflink: CloneProvider(kind: .reflink)
        case .copy: CloneProvider(kind: .copy)
        case .none: LiveProvider()
        }
    }
}

/// Reads live data: records that nothing is point-in-time.
struct LiveProvider: Provider {
    var kind: ProviderKind { .none }
    func prepare(_ plan: VolumePlan, setID: String, snapshotID: String) throws {
        plan.properties = ShadowCopyProperties(
            snapshotID: snapshotID, setID: setID, volume: plan.volume, snapshotPath: plan.volume.mountPoint, provider: .none,
            created: Date(), host: ProcessInfo.processInfo.hostName, subvolumes: [:],
            warnings: ["\(plan.volume.mountPoint): no shadow copy; files are read live (not point-in-time)"])
    }
    func commit(_ plan: VolumePlan, deadline: ContinuousClock.Instant) throws {}
    func delete(_ properties: ShadowCopyProperties) throws {}
}

/// Removes a directory tree (shadow clone directories); missing is fine.
func removeTree(_ path: String) throws {
    guard FileManager.default.fileExists(atPath: path) else { return }
    // Clones keep their original modes; make sure directories can be emptied.
    if let e = FileManager.default.enumerator(atPath: path) {
        while let rel = e.nextObject() as? String {
            var st = stat()
            if lstat(path + "/" + rel, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR { chmod(path + "/" + rel, 0o700) }
        }
    }
    try FileManager.default.removeItem(atPath: path)
}

func mkdirs(_ path: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
}
