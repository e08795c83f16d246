import Foundation

/// The volumes of a shadow copy set: at most 64, each once (VSS's rules for AddToSnapshotSet).
public struct ShadowCopySet: Sendable {
    /// VSS's limit on volumes in one set.
    public static let maximumVolumes = 64
    /// The volumes, in the order added.
    public private(set) var volumes: [Volume] = []

    /// An empty set.
    public init() {}

    /// Adds a volume; more than `maximumVolumes` or one twice is an error.
    public mutating func add(_ volume: Volume) throws {
        if volumes.contains(where: { $0.device == volume.device && $0.mountPoint == volume.mountPoint }) {
            throw ShadowCopyError.duplicateVolume(volume)
        }
        guard volumes.count < Self.maximumVolumes else { throw ShadowCopyError.tooManyVolumes(volumes.count + 1) }
        volumes.append(volume)
    }
}

extension Coordinator {
    /// Whether a session would do anything: false when there are no writers, no forced provider, and
    /// no path lies on a snapshot-capable filesystem (then the backup simply reads live files).
    public static func needsShadowCopy(paths: [String], writers: [Writer], options: CoordinatorOptions) -> Bool {
        if !writers.isEmpty || options.provider != nil { return true }
        guard let mounts = try? Mounts.load() else { return false }
        for path in paths {
            guard let real = Mounts.realPath(path), let volume = try? Mounts.volume(for: real, in: mounts) else { continue }
            if volume.readOnly { continue }
            if volume.fsType == "btrfs" { return true }
            if ["xfs", "bcachefs", "ocfs2"].contains(volume.fsType) { return true }
        }
        return false
    }
}
