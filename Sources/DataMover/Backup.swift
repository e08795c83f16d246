import ChunkStore
import Compression
import Foundation

/// Backs up paths into a store: the scanner walks the tree on the calling thread and hands files to
/// `workers` threads, each with its own `ChunkSaver`; trees are stored as their directories complete;
/// the snapshot record is written last, after the packs and the index segment (the commit point).
public final class Backup: @unchecked Sendable {
    public let store: Store
    public let options: BackupOptions
    private let errorsLock = NSLock()
    private var errors: [String] = []
    private var originalDevices: [String: dev_t] = [:]
    /// A writer's file (a database written while it is backed up) whose ctime is at or after this moment
    /// may have changed after the parent snapshot read it, within one tick of the file system's clock,
    /// with metadata that cannot tell: the files cache does not trust it (git's "racily clean" files).
    /// Set before the scan starts; read-only during it.
    private var racyFrom: Timestamp?
    /// How coarse file timestamps may be, in seconds: Linux stamps files from a clock that ticks every
    /// few milliseconds, and some filesystems keep whole seconds only.
    static let timestampGranularity: Int64 = 1
    let counter = ProgressMeter(action: "backup")
    /// `options.source.capturedNames()`, made once.
    private let capturedNames: [String: [[UInt8]]]

    public init(store: Store, options: BackupOptions) {
        self.store = store
        self.options = options
        capturedNames = options.source.capturedNames()
    }

    public func run() throws -> BackupResult {
        let started = Date()
        let clock = ContinuousClock.now
        let paths = try Self.normalize(options.paths, source: options.source)
        let storeLock = try StoreLock.acquire(store, exclusive: false, purpose: "backup")
        defer { storeLock.release() }
        try store.upgradeFormat()
        let packs = store.makePackWriter()
        defer { packs.cancel() }  // after commit: nothing left to cancel; on any error: stop its thread
        let codec = options.codec ?? store.codec
        let workerCount = max(1, options.workers)
        let savers = (0...workerCount).map { _ in ChunkSaver(store: store, packs: packs, codec: codec) }
        let scannerSaver = savers[0]
        let queue = BackupLanes(workers: workerCount, progress: counter)
        counter.start(options.progress)
        defer { counter.stop() }
        let failure = FirstFailure()
        let rootTree = RootTreeBox()

        let workers = WorkerThreads(count: workerCount, name: "backup") { [self] i in
            let saver = savers[i + 1]
            let reader = FileReader(saver: saver, lanes: queue)
            while let work = queue.lanes.pop() {
                if failure.isSet {
                    if case .batch(let b) = work { b.job.fail(CancellationError()); b.job.release(b.buffer, batch: true) }
                    continue
                }
                do {
                    switch work {
                    case .file(let job): try process(job, reader: reader)
                    case .batch(let batch): try batch.job.run(batch, saver)
                    }
                } catch {
                    failure.set(error)
                }
            }
            do { try saver.finish() } catch { failure.set(error) }
        }

        var stats = BackupSummary()
        do {
            let root = DirectoryBuilder(node: nil, parent: nil, slot: 0) { rootTree.set($0) }
            let trie = PathTrie(paths: paths)
            try scan(trie: trie, at: PathBytes("/"), into: root, parent: parentRoot(paths), saver: scannerSaver, queue: queue, stats: &stats, failure: failure)
            try root.sealed(saver: scannerSaver)
            counter.totalKnown()
        } catch {
            failure.set(error)
        }
        do { try scannerSaver.finish() } catch { failure.set(error) }
        queue.lanes.close()
        workers.join()
        if let error = failure.error {
            packs.cancel()
            throw error
        }

        guard let tree = rootTree.value else { throw BackupError.noPaths }
        try packs.commit()

        var total = ChunkSaver.SaverStats()
        for s in savers { total.merge(s.stats) }
        stats.bytesRead = total.bytesRead
        stats.chunks = total.chunks
        stats.chunksNew = total.chunksNew
        stats.bytesAdded = total.bytesAdded
        stats.bytesStored = total.bytesStored
        stats.treeBytesStored = total.treeBytesStored
        stats.errors = errorsLock.withLock { errors }
        let elapsed = ContinuousClock.now - clock
        stats.durationSeconds = elapsed.seconds

        var record = SnapshotRecord(
            time: started, hostname: options.hostname, username: NSUserName(), paths: paths.map(\.description),
            tree: tree, tags: options.tags, programVersion: ShadowMoverVersion.current, summary: stats)
        record.shadowCopy = options.shadowCopy?(stats)
        let id = try store.saveSnapshot(record)
        return BackupResult(snapshotID: id, record: record)
    }

    // MARK: Scanner

    struct FileJob {
        var path: PathBytes
        var readPath: PathBytes
        var node: Node
        var directory: DirectoryBuilder
        var slot: Int
    }

    private func process(_ job: FileJob, reader: FileReader) throws {
        var node = job.node
        counter.current(job.path.description)
        defer { counter.finishedFile() }
        do {
            let (content, size) = try reader.saveFile(job.readPath, expectedSize: Int64(job.node.size))
            if size != job.node.size {
                // Recorded as read; the user learns that this file is not a consistent copy.
                report("\(job.path) changed size while being read (\(job.node.size) → \(size) bytes); the snapshot holds what was read")
            }
            try reader.saver.attach(content, to: &node)
            node.size = size
            try job.directory.complete(slot: job.slot, with: node, saver: reader.saver)
        } catch let failure as FileSystem.Failure {
            if !(failure.code == ENOENT && options.source.mayVanish(job.path.description)) {
                report(failure.code == ENOENT ? "\(job.path) disappeared before it could be read" : failure.description)
            }
            try job.directory.complete(slot: job.slot, with: nil, saver: reader.saver)
        }
    }

    private func report(_ message: String) {
        errorsLock.withLock { errors.append(message) }
    }

    /// Where to read an original path from, and its metadata: a captured file's freeze-time stat, or the
    /// lstat of the path in the shadow copy (or the live path).
    private func locate(_ original: PathBytes) throws -> (read: PathBytes, stat: stat) {
        if let captured = options.source.files[original.description] {
            return (PathBytes(captured.read), captured.stat)
        }
        let (read, mappedFrom) = options.source.resolve(original)
        var st = try FileSystem.lstat(read)
        if let mappedFrom {
            // A snapshot has a device number of its own, new each time; record the original's, so the
            // files cache recognises unchanged files across backups.
            st.st_dev = originalDevice(mappedFrom) ?? st.st_dev
        }
        return (read, st)
    }

    private func originalDevice(_ root: String) -> dev_t? {
        errorsLock.withLock {
            if let d = originalDevices[root] { return d }
            var st = stat()
            guard lstat(root, &st) == 0 else { return nil }
            originalDevices[root] = st.st_dev
            return st.st_dev
        }
    }

    private func isExcluded(_ path: PathBytes) -> Bool {
        guard !options.excludedPaths.isEmpty || !options.excludeRules.isEmpty else { return false }
        let text = path.description
        return options.excludedPaths.contains(text) || options.excludeRules.contains { $0.matches(text) }
    }

    /// Walks the directories above the backup paths (metadata only) and the paths themselves (fully).
    private func scan(
        trie: PathTrie, at path: PathBytes, into builder: DirectoryBuilder, parent: ParentTree?, saver: ChunkSaver,
        queue: BackupLanes, stats: inout BackupSummary, failure: FirstFailure
    ) throws {
        if trie.isTarget {  // backing up "/" itself
            let root = try locate(path)
            try scanChildren(of: path, read: root.read, device: root.stat.st_dev, into: builder, parent: parent, saver: saver, queue: queue, stats: &stats, failure: failure)
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
            } catch let e as FileSystem.Failure where e.code == ENOENT && child.isTarget && options.source.mayVanish(childPath.description) {
                try builder.complete(slot: slot, with: nil, saver: saver)  // a transient file, gone: nothing to back up
                continue
            }
            if child.isTarget {
                try scanEntry(
                    name: name, path: childPath, located: located, device: located.stat.st_dev, into: builder, slot: slot,
                    parent: parent?.node(name), saver: saver, queue: queue, stats: &stats, failure: failure)
            } else {
                guard var node = FileSystem.node(name: name, stat: located.stat), node.kind == .directory else {
                    throw BackupError.pathMissing(childPath.description, "not a directory")
                }
                node.xattrs = try? nonEmpty(FileSystem.readXattrs(located.read))
                stats.directories += 1
                let sub = DirectoryBuilder(node: node, parent: builder, slot: slot)
                try scan(trie: child, at: childPath, into: sub, parent: subtree(of: parent?.node(name)), saver: saver, queue: queue, stats: &stats, failure: failure)
                try sub.sealed(saver: saver)
            }
        }
    }

    private func scanChildren(
        of path: PathBytes, read: PathBytes, device: dev_t, into builder: DirectoryBuilder, parent: ParentTree?, saver: ChunkSaver,
        queue: BackupLanes, stats: inout BackupSummary, failure: FirstFailure
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
                if located.stat.st_mode & S_IFMT != S_IFDIR && options.source.absentAtFreeze(childPath.description) {
                    try builder.complete(slot: i, with: nil, saver: saver)  // a component file made after the freeze
                    continue
                }
                try scanEntry(
                    name: childName, path: childPath, located: located, device: device, into: builder, slot: i,
                    parent: parent?.node(childName), saver: saver, queue: queue, stats: &stats, failure: failure)
            } catch let e as FileSystem.Failure {
                if !(e.code == ENOENT && options.source.mayVanish(childPath.description)) { report(e.description) }
                try builder.complete(slot: i, with: nil, saver: saver)
            }
        }
    }

    /// A directory's entries, sorted: those listed where it is read from, and the files captured in it
    /// at the freeze point that are gone from there since.
    private func entries(of path: PathBytes, read: PathBytes) throws -> [[UInt8]] {
        let listed = try FileSystem.list(read)
        guard let captured = capturedNames[path.description] else { return listed }
        let missing = Set(captured).subtracting(listed)
        return missing.isEmpty ? listed : (listed + missing).sorted { $0.lexicographicallyPrecedes($1) }
    }

    private func scanEntry(
        name: [UInt8], path: PathBytes, located: (read: PathBytes, stat: stat), device: dev_t, into builder: DirectoryBuilder,
        slot: Int, parent: Node?, saver: ChunkSaver, queue: BackupLanes, stats: inout BackupSummary, failure: FirstFailure
    ) throws {
        if failure.isSet { return }
        let st = located.stat
        guard var node = FileSystem.node(name: name, stat: st) else {
            report("skipped \(path): unknown file type")
            try builder.complete(slot: slot, with: nil, saver: saver)
            return
        }
        // A captured file's clone carries no xattrs: the provider read the original's at the freeze.
        if let captured = options.source.files[path.description] {
            node.xattrs = nonEmpty(captured.xattrs.sorted { $0.name < $1.name })
        } else {
            do {
                node.xattrs = try nonEmpty(FileSystem.readXattrs(located.read))
            } catch let e as FileSystem.Failure {
                if !(e.code == ENOENT && options.source.mayVanish(path.description)) { report(e.description) }
            }
        }
        switch node.kind {
        case .file:
            stats.files += 1
            if let unchanged = unchangedContent(node, parent, path: path) {
                // Files cache: same device, inode, size, mtime and ctime as in the parent snapshot.
                node.content = unchanged.content
                node.contentLists = unchanged.contentLists
                stats.filesUnchanged += 1
                stats.bytesUnchanged += node.size
                counter.found(bytes: node.size)
                counter.finishedFile(unreadBytes: node.size)
                try builder.complete(slot: slot, with: node, saver: saver)
            } else {
                counter.found(bytes: node.size)
                queue.lanes.push(file: FileJob(path: path, readPath: located.read, node: node, directory: builder, slot: slot))
            }
        case .directory:
            stats.directories += 1
            let sub = DirectoryBuilder(node: node, parent: builder, slot: slot)
            if options.oneFileSystem && st.st_dev != device {
                sub.expect(0)  // a mount point: kept as an empty directory, like restic
            } else {
                do {
                    try scanChildren(of: path, read: located.read, device: device, into: sub, parent: subtree(of: parent), saver: saver, queue: queue, stats: &stats, failure: failure)
                } catch let e as FileSystem.Failure {
                    report(e.description)  // unreadable directory: kept, empty
                }
            }
            try sub.sealed(saver: saver)
        case .symlink:
            stats.otherEntries += 1
            do {
                node.linkTarget = try FileSystem.readLink(located.read)
                try builder.complete(slot: slot, with: node, saver: saver)
            } catch let e as FileSystem.Failure {
                report(e.description)
                try builder.complete(slot: slot, with: nil, saver: saver)
            }
        default:
            stats.otherEntries += 1
            try builder.complete(slot: slot, with: node, saver: saver)
        }
    }

    // MARK: Files cache

    /// The root tree of the parent snapshot: the one named, or the latest with the same paths and host.
    private func parentRoot(_ paths: [PathBytes]) -> ParentTree? {
        guard !options.force else { return nil }
        let record: SnapshotRecord?
        if let name = options.parent {
            record = try? store.resolveSnapshot(name).record
        } else {
            let wanted = paths.map(\.description)
            record = (try? store.snapshots().records)?.last { $0.record.paths == wanted && $0.record.hostname == options.hostname }?.record
        }
        guard let record, let tree = try? store.loadTree(record.tree) else { return nil }
        let started = Timestamp(record.time)
        racyFrom = Timestamp(seconds: started.seconds - Self.timestampGranularity, nanoseconds: started.nanoseconds)
        return ParentTree(tree)
    }

    private func subtree(of node: Node?) -> ParentTree? {
        guard !options.force, let id = node?.subtree, let tree = try? store.loadTree(id) else { return nil }
        return ParentTree(tree)
    }

    /// The parent's content (chunk ids, or content lists) for a file that has not changed, if every
    /// blob it names is still in the store.
    private func unchangedContent(_ node: Node, _ parent: Node?, path: PathBytes) -> (content: [ChunkID]?, contentLists: [ChunkID]?)? {
        guard let parent, parent.kind == .file, parent.content != nil || parent.contentLists != nil, parent.device == node.device,
            parent.inode == node.inode, parent.size == node.size, parent.mtime == node.mtime, parent.ctime == node.ctime
        else { return nil }
        // A writer's file changed in the same clock tick as the parent read it? Its metadata cannot tell:
        // read it again. (Other files are not written during a backup; their metadata is trusted.)
        if let racyFrom, !(node.ctime < racyFrom), options.source.isComponentFile(path.description) { return nil }
        for id in (parent.content ?? []) + (parent.contentLists ?? []) where !store.index.contains(id) { return nil }
        return (parent.content, parent.contentLists)
    }

    private func nonEmpty(_ x: [ExtendedAttribute]) -> [ExtendedAttribute]? { x.isEmpty ? nil : x }

    /// Absolute, lexically cleaned paths (symlinks are not resolved: a symlink given is backed up as one),
    /// with paths inside another given path dropped. A path must exist where it is read from (`source`:
    /// a captured file, a shadow copy, or live); a transient one that does not is dropped.
    static func normalize(_ paths: [String], source: BackupSource = BackupSource()) throws -> [PathBytes] {
        guard !paths.isEmpty else { throw BackupError.noPaths }
        let cwd = FileManager.default.currentDirectoryPath
        var cleaned: [[[UInt8]]] = []
        for p in paths {
            let absolute = p.hasPrefix("/") ? p : cwd + "/" + p
            var parts: [[UInt8]] = []
            for c in PathBytes(absolute).components {
                if c == [46] { continue }
                if c == [46, 46] { _ = parts.popLast(); continue }
                parts.append(c)
            }
            let path = PathBytes("/" + parts.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/"))
            var st = stat()
            if source.files[path.description] == nil, source.resolve(path).read.withCString({ lstat($0, &st) }) != 0 {
                if errno == ENOENT && source.mayVanish(path.description) { continue }
                throw BackupError.pathMissing(p, String(cString: strerror(errno)))
            }
            cleaned.append(parts)
        }
        // Drop duplicates and paths below another path.
        cleaned.sort { $0.count < $1.count }
        var kept: [[[UInt8]]] = []
        for c in cleaned where !kept.contains(where: { k in c.count >= k.count && Array(c.prefix(k.count)) == k }) {
            kept.append(c)
        }
        return kept.map { parts in
            var bytes: [UInt8] = []
            for part in parts { bytes.append(UInt8(ascii: "/")); bytes.append(contentsOf: part) }
            return PathBytes(bytes.isEmpty ? [UInt8(ascii: "/")] : bytes)
        }
    }
}

/// A directory of the parent snapshot, by name.
struct ParentTree {
    private let byName: [[UInt8]: Node]
    init(_ tree: Tree) { byName = Dictionary(tree.nodes.map { ($0.nameBytes, $0) }, uniquingKeysWith: { a, _ in a }) }
    func node(_ name: [UInt8]) -> Node? { byName[name] }
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

/// The first error any thread hit; once set, everyone stops.
final class FirstFailure: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Error?
    var isSet: Bool { lock.withLock { stored != nil } }
    var error: Error? { lock.withLock { stored } }
    func set(_ e: Error) { lock.withLock { if stored == nil { stored = e } } }
}

final class RootTreeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var id: ChunkID?
    var value: ChunkID? { lock.withLock { id } }
    func set(_ v: ChunkID) { lock.withLock { id = v } }
}

public enum ShadowMoverVersion {
    public static let current = "0.1.0"
}
