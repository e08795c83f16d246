import ChunkStore
import Foundation

/// The scanner: walks the backup paths on one thread, in directory order. A directory's entries get
/// their slots in its `TreeSaver`; unchanged files take their chunk ids from the parent snapshot
/// (`FilesCache`); other files go to the workers as `FileJob`s; directories, links and special files
/// are complete at once.
final class Scanner {  // used by the scanning thread only
    let backup: Backup
    let saver: ChunkSaver
    let lanes: BackupLanes
    let failure: FirstFailure
    var cache: FilesCache
    var stats = BackupSummary()
    /// A snapshot's own device number, new each time, is recorded as its original's (by mount root).
    private var originalDevices: [String: dev_t] = [:]
    /// `options.source.capturedNames()`, made once.
    private let capturedNames: [String: [[UInt8]]]

    init(backup: Backup, saver: ChunkSaver, lanes: BackupLanes, failure: FirstFailure) {
        self.backup = backup
        self.saver = saver
        self.lanes = lanes
        self.failure = failure
        cache = FilesCache(store: backup.store, options: backup.options)
        capturedNames = backup.options.source.capturedNames()
    }

    /// Scans `paths` into a root tree; its id is set when the last file below it is saved (perhaps on
    /// a worker, after this returns). A failure is recorded in `failure`.
    func run(_ paths: [PathBytes]) -> RootTreeBox {
        let rootTree = RootTreeBox()
        do {
            let root = TreeSaver(node: nil, parent: nil, slot: 0) { rootTree.set($0) }
            try scan(trie: PathTrie(paths: paths), at: PathBytes("/"), into: root, parent: cache.parentRoot(paths))
            try root.sealed(saver: saver)
            backup.counter.totalKnown()
        } catch {
            failure.set(error)
        }
        do { try saver.finish() } catch { failure.set(error) }
        return rootTree
    }

    /// One file for a worker: where it is read from and where its node goes.
    struct FileJob {
        var path: PathBytes
        var readPath: PathBytes
        var node: Node
        var directory: TreeSaver
        var slot: Int
    }

    /// Where to read an original path from, and its metadata: a captured file's freeze-time stat, or the
    /// lstat of the path in the shadow copy (or the live path).
    func locate(_ original: PathBytes) throws -> (read: PathBytes, stat: stat) {
        if let captured = backup.options.source.files[original.description] {
            return (PathBytes(captured.read), captured.stat)
        }
        let (read, mappedFrom) = backup.options.source.resolve(original)
        var st = try FileSystem.lstat(read)
        if let mappedFrom {
            // A snapshot has a device number of its own, new each time; record the original's, so the
            // files cache recognises unchanged files across backups.
            st.st_dev = originalDevice(mappedFrom) ?? st.st_dev
        }
        return (read, st)
    }

    func originalDevice(_ root: String) -> dev_t? {
        if let d = originalDevices[root] { return d }
        var st = stat()
        guard lstat(root, &st) == 0 else { return nil }
        originalDevices[root] = st.st_dev
        return st.st_dev
    }

    func isExcluded(_ path: PathBytes) -> Bool {
        guard !backup.options.excludedPaths.isEmpty || !backup.options.excludeRules.isEmpty else { return false }
        let text = path.description
        return backup.options.excludedPaths.contains(text) || backup.options.excludeRules.contains { $0.matches(text) }
    }

    /// Walks the directories above the backup paths (metadata only) and the paths themselves (fully).
    func scan(
        trie: PathTrie, at path: PathBytes, into builder: TreeSaver, parent: ParentTree?
    ) throws {
        if trie.isTarget {  // backing up "/" itself
            let root = try locate(path)
            try scanChildren(of: path, read: root.read, device: root.stat.st_dev, into: builder, parent: parent)
            return
        }
        let names = trie.children.keys.sorted { $0.lexicographicallyPrecedes($1) }
        builder.expect(names.count)
        for (slot, name) in names.enumerated() {
            let child = trie.children[name]!
            let childPath = path.appending(name)
            let located: (read: PathBytes, stat: stat)
            do {
                located = try locate(childPath)
            } catch let e as FileSystem.Failure where e.code == ENOENT && child.isTarget && backup.options.source.mayVanish(childPath.description) {
                try builder.complete(slot: slot, with: nil, saver: saver)  // a transient file, gone: nothing to back up
                continue
            }
            if child.isTarget {
                try scanEntry(
                    name: name, path: childPath, located: located, device: located.stat.st_dev, into: builder, slot: slot,
                    parent: parent?.node(name))
            } else {
                guard var node = FileSystem.node(name: name, stat: located.stat), node.kind == .directory else {
                    throw BackupError.pathMissing(childPath.description, "not a directory")
                }
                node.xattrs = try? nonEmpty(FileSystem.readXattrs(located.read))
                stats.directories += 1
                let sub = TreeSaver(node: node, parent: builder, slot: slot)
                try scan(trie: child, at: childPath, into: sub, parent: cache.subtree(of: parent?.node(name)))
                try sub.sealed(saver: saver)
            }
        }
    }

    func scanChildren(
        of path: PathBytes, read: PathBytes, device: dev_t, into builder: TreeSaver, parent: ParentTree?
    ) throws {
        let names = try entries(of: path, read: read)
        builder.expect(names.count)
        for (i, childName) in names.enumerated() {
            let childPath = path.appending(childName)
            do {
                if isExcluded(childPath) {
                    try builder.complete(slot: i, with: nil, saver: saver)
                    continue
                }
                let located = try locate(childPath)
                if located.stat.st_mode & S_IFMT != S_IFDIR && backup.options.source.absentAtFreeze(childPath.description) {
                    try builder.complete(slot: i, with: nil, saver: saver)  // a component file made after the freeze
                    continue
                }
                try scanEntry(
                    name: childName, path: childPath, located: located, device: device, into: builder, slot: i,
                    parent: parent?.node(childName))
            } catch let e as FileSystem.Failure {
                if !(e.code == ENOENT && backup.options.source.mayVanish(childPath.description)) { backup.log.report(e.description) }
                try builder.complete(slot: i, with: nil, saver: saver)
            }
        }
    }

    /// A directory's entries, sorted: those listed where it is read from, and the files captured in it
    /// at the freeze point that are gone from there since.
    func entries(of path: PathBytes, read: PathBytes) throws -> [[UInt8]] {
        let listed = try FileSystem.list(read)
        guard let captured = capturedNames[path.description] else { return listed }
        let missing = Set(captured).subtracting(listed)
        return missing.isEmpty ? listed : (listed + missing).sorted { $0.lexicographicallyPrecedes($1) }
    }

    func scanEntry(
        name: [UInt8], path: PathBytes, located: (read: PathBytes, stat: stat), device: dev_t, into builder: TreeSaver,
        slot: Int, parent: Node?
    ) throws {
        if failure.isSet { return }
        let st = located.stat
        guard var node = FileSystem.node(name: name, stat: st) else {
            backup.log.report("skipped \(path): unknown file type")
            try builder.complete(slot: slot, with: nil, saver: saver)
            return
        }
        // A captured file's clone carries no xattrs: the provider read the original's at the freeze.
        if let captured = backup.options.source.files[path.description] {
            node.xattrs = nonEmpty(captured.xattrs.sorted { $0.name < $1.name })
        } else {
            do {
                node.xattrs = try nonEmpty(FileSystem.readXattrs(located.read))
            } catch let e as FileSystem.Failure {
                if !(e.code == ENOENT && backup.options.source.mayVanish(path.description)) { backup.log.report(e.description) }
            }
        }
        switch node.kind {
        case .file:
            stats.files += 1
            if let unchanged = cache.unchangedContent(node, parent, path: path) {
                // Files cache: same device, inode, size, mtime and ctime as in the parent snapshot.
                node.content = unchanged.content
                node.contentLists = unchanged.contentLists
                stats.filesUnchanged += 1
                stats.bytesUnchanged += node.size
                backup.counter.found(bytes: node.size)
                backup.counter.finishedFile(unreadBytes: node.size)
                try builder.complete(slot: slot, with: node, saver: saver)
            } else {
                backup.counter.found(bytes: node.size)
                lanes.lanes.push(file: FileJob(path: path, readPath: located.read, node: node, directory: builder, slot: slot))
            }
        case .directory:
            stats.directories += 1
            let sub = TreeSaver(node: node, parent: builder, slot: slot)
            if backup.options.oneFileSystem && st.st_dev != device {
                sub.expect(0)  // a mount point: kept as an empty directory, like restic
            } else {
                do {
                    try scanChildren(of: path, read: located.read, device: device, into: sub, parent: cache.subtree(of: parent))
                } catch let e as FileSystem.Failure {
                    backup.log.report(e.description)  // unreadable directory: kept, empty
                }
            }
            try sub.sealed(saver: saver)
        case .symlink:
            stats.otherEntries += 1
            do {
                node.linkTarget = try FileSystem.readLink(located.read)
                try builder.complete(slot: slot, with: node, saver: saver)
            } catch let e as FileSystem.Failure {
                backup.log.report(e.description)
                try builder.complete(slot: slot, with: nil, saver: saver)
            }
        default:
            stats.otherEntries += 1
            try builder.complete(slot: slot, with: node, saver: saver)
        }
    }

    private func nonEmpty(_ x: [ExtendedAttribute]) -> [ExtendedAttribute]? { x.isEmpty ? nil : x }
}

/// The backup paths as a trie of path components from `/`.
struct PathTrie {
    var children: [[UInt8]: PathTrie] = [:]
    var isTarget = false

    init() {}

    init(paths: [PathBytes]) {
        for p in paths { insert(p.components[...]) }
    }

    private mutating func insert(_ parts: ArraySlice<[UInt8]>) {
        guard let first = parts.first else {
            isTarget = true
            return
        }
        var child = children[first] ?? PathTrie()
        child.insert(parts.dropFirst())
        children[first] = child
    }
}
