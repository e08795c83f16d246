import CLinux
import Foundation

/// Read-only btrfs snapshots (BTRFS_IOC_SNAP_CREATE_V2) of the subvolumes holding the data, in
/// `<mount>/.shadowmover-shadows/<snapshot id>/<n>`. Atomic per subvolume and O(1) in the freeze window.
/// Snapshots do not include nested subvolumes (they appear as empty directories): prepare warns.
struct BtrfsProvider: Provider {
    var kind: ProviderKind { .btrfs }

    /// Every btrfs subvolume's root directory has this inode number (BTRFS_FIRST_FREE_OBJECTID).
    static let subvolumeRootInode: UInt = 256

    func prepare(_ plan: VolumePlan, setID: String, snapshotID: String) throws {
        guard plan.volume.fsType == "btrfs" else {
            throw ShadowCopyError.unsupported(plan.volume, "it is \(plan.volume.fsType), not btrfs: choose --provider reflink or copy")
        }
        if plan.volume.readOnly { throw ShadowCopyError.readOnly(plan.volume, "btrfs") }
        var roots: [String] = []
        for path in plan.paths + plan.componentSpecs.map(\.path) {
            let root = try Self.subvolumeRoot(of: path, mountPoint: plan.volume.mountPoint)
            if !roots.contains(root) { roots.append(root) }
        }
        plan.subvolumeRoots = roots
        let directory = plan.shadowDirectory + "/" + snapshotID
        try mkdirs(directory)
        plan.properties = ShadowCopyProperties(
            snapshotID: snapshotID, setID: setID, volume: plan.volume, snapshotPath: directory, provider: .btrfs, created: Date(),
            host: ProcessInfo.processInfo.hostName, subvolumes: [:], warnings: nestedSubvolumeWarnings(plan))
    }

    func commit(_ plan: VolumePlan, deadline: ContinuousClock.Instant) throws {
        guard var properties = plan.properties else { return }
        let destination = open(properties.snapshotPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard destination >= 0 else {
            throw ShadowCopyError.provider(plan.volume, "cannot open \(properties.snapshotPath): \(String(cString: strerror(errno)))")
        }
        defer { close(destination) }
        for (i, root) in plan.subvolumeRoots.enumerated() {
            let source = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard source >= 0 else { throw ShadowCopyError.provider(plan.volume, "cannot open subvolume \(root): \(String(cString: strerror(errno)))") }
            let rc = shadowmover_btrfs_snapshot(source, destination, "\(i)", 1)
            let e = errno
            close(source)
            guard rc == 0 else {
                if e == EROFS { throw ShadowCopyError.readOnly(plan.volume, "btrfs") }
                throw ShadowCopyError.provider(plan.volume, "btrfs snapshot of \(root) failed: \(String(cString: strerror(e)))")
            }
            properties.subvolumes[root] = properties.snapshotPath + "/\(i)"
            plan.properties = properties
            if ContinuousClock.now > deadline { return }  // the coordinator reports the overrun
        }
    }

    func delete(_ properties: ShadowCopyProperties) throws {
        let directory = properties.snapshotPath
        guard FileManager.default.fileExists(atPath: directory) else { return }
        let parent = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if parent >= 0 {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
                var st = stat()
                if lstat(directory + "/" + name, &st) == 0, UInt(st.st_ino) == Self.subvolumeRootInode {
                    if shadowmover_btrfs_delete(parent, name) != 0 {
                        let e = errno
                        close(parent)
                        throw ShadowCopyError.provider(properties.volume, "cannot delete snapshot \(directory)/\(name): \(String(cString: strerror(e)))")
                    }
                }
            }
            close(parent)
        }
        try removeTree(directory)
    }

    /// Walks up from `path` to the nearest directory with the subvolume root inode.
    static func subvolumeRoot(of path: String, mountPoint: String) throws -> String {
        guard var current = Mounts.realPath(path) else { throw ShadowCopyError.pathMissing(path) }
        while true {
            var st = stat()
            if lstat(current, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, UInt(st.st_ino) == subvolumeRootInode { return current }
            if current == mountPoint || current == "/" { return mountPoint }
            current = (current as NSString).deletingLastPathComponent
        }
    }

    /// Nested subvolumes under the backed-up paths are not in the snapshot; say so.
    private func nestedSubvolumeWarnings(_ plan: VolumePlan) -> [String] {
        var warnings: [String] = []
        for path in plan.paths {
            guard let e = FileManager.default.enumerator(atPath: path) else { continue }
            // Stop early on huge trees: a warning is advice, not a guarantee.
            var visited = 0
            while let rel = e.nextObject() as? String, visited < 200_000 {
                visited += 1
                guard (e.fileAttributes?[.type] as? FileAttributeType) == .typeDirectory else { continue }
                var st = stat()
                let full = path + "/" + rel
                if lstat(full, &st) == 0, UInt(st.st_ino) == Self.subvolumeRootInode, !full.contains("/.shadowmover-shadows") {
                    warnings.append("\(full) is a nested btrfs subvolume: the snapshot does not include it (it will be empty)")
                    e.skipDescendants()
                }
            }
        }
        return warnings
    }
}
