import CLinux
import ChunkStore
import Compression
import Foundation

/// What to restore and where.
public struct RestoreOptions: Sendable {
    public var target: String
    /// Restore only this path of the snapshot (absolute, as backed up); it is placed in the target under
    /// its own name.
    public var subPath: String?
    /// Allow a non-empty target; existing files in the way are replaced.
    public var overwrite = false
    /// Restore every file that does not touch a damaged object, and report the rest.
    public var skipDamaged = false
    public var workers = ProcessInfo.processInfo.activeProcessorCount

    public init(target: String) { self.target = target }
}

public struct RestoreSummary: Sendable, Codable {
    public var files = 0
    public var directories = 0
    public var otherEntries = 0
    public var bytesWritten: UInt64 = 0
    public var durationSeconds: Double = 0
    /// Damaged or missing objects and the files they made unrestorable (with `skipDamaged`).
    public var damage: [DamageReport] = []
    /// Metadata that could not be applied (e.g. ownership without root), one message each.
    public var warnings: [String] = []
}

/// A damaged object and the restored paths it affects.
public struct DamageReport: Sendable, Codable, CustomStringConvertible {
    public var object: String
    public var reason: String
    public var affectedFiles: [String]

    public var description: String {
        "\(object) is damaged (\(reason)); affected: " + (affectedFiles.isEmpty ? "nothing restored" : affectedFiles.joined(separator: ", "))
    }
}

/// Counts the parts of a file still being restored; the last one applies the file's metadata.
final class FileCountdown: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var left: Int
    private var damaged = false
    init(_ parts: Int) { left = parts }

    /// - Returns: true for the last part of an undamaged file.
    func finishOne() -> Bool { lock.withLock { left -= 1; return left == 0 && !damaged } }

    /// - Returns: true the first time (the caller removes the file).
    func markDamaged() -> Bool { lock.withLock { defer { damaged = true }; return !damaged } }
}

public enum RestoreError: Error, CustomStringConvertible {
    case targetNotEmpty(String)
    case unsafeName(entry: String, directory: String)
    case pathNotInSnapshot(String)
    case damaged([DamageReport])
    case damagedIndex([DamageReport])
    case target(String)

    public var description: String {
        switch self {
        case .targetNotEmpty(let t): "the target \(t) is not empty: choose an empty directory, or pass --overwrite"
        case .unsafeName(let entry, let dir):
            "refusing to restore entry \(entry.debugDescription) in \(dir): its name would escape the target (the snapshot's tree is damaged or malicious)"
        case .pathNotInSnapshot(let p): "\(p) is not in the snapshot: list its contents with `shadowmover ls`"
        case .damaged(let reports):
            "the snapshot refers to damaged data:\n" + reports.map { "  " + $0.description }.joined(separator: "\n")
                + "\nrestore the other files with --skip-damaged"
        case .damagedIndex(let reports):
            reports.map(\.description).joined(separator: "\n")
                + "\nrebuild the index from the packs with `shadowmover repair index`, or restore what can be found with --skip-damaged"
        case .target(let m): m
        }
    }
}

/// Restores a snapshot: walks its trees (checking every name) into a plan, creates directories and
/// special files, restores file contents on `workers` threads (each chunk read, decompressed and
/// verified, then written with pwrite at its offset, all-zero chunks of sparse files left as holes),
/// and finally applies directory metadata deepest first.
public final class Restorer: @unchecked Sendable {
    public let store: Store
    public let options: RestoreOptions
    private let lock = NSLock()
    private var damagedObjects: [String: String] = [:]  // object → reason
    private var damagedFiles: [String: [String]] = [:]  // object → files
    private var warnings: [String] = []
    private var bytesWritten: UInt64 = 0

    public init(store: Store, options: RestoreOptions) {
        self.store = store
        self.options = options
    }

    struct Entry {
        var path: PathBytes
        var node: Node
    }

    public func run(snapshot record: SnapshotRecord) throws -> RestoreSummary {
        let clock = ContinuousClock.now
        let target = PathBytes(options.target)
        let damagedIndex = store.index.damagedSegments.map {
            DamageReport(object: "index segment \($0.name)", reason: "\($0.error)", affectedFiles: ["any file whose chunks it lists"])
        }
        if !damagedIndex.isEmpty && !options.skipDamaged { throw RestoreError.damagedIndex(damagedIndex) }
        try prepareTarget(target)
        var plan: [Entry] = []
        var treeDamage: [DamageReport] = []
        if let sub = options.subPath {
            let node = try find(sub, in: record.tree)
            try walk(node: node, at: target.appending(node.nameBytes), into: &plan, damage: &treeDamage)
        } else {
            try walk(tree: record.tree, at: target, display: "/", into: &plan, damage: &treeDamage)
        }
        if !treeDamage.isEmpty && !options.skipDamaged { throw RestoreError.damaged(treeDamage) }

        var summary = RestoreSummary()
        let owner = geteuid() == 0
        let queue = BoundedQueue<RestoreTask>(capacity: 4 * max(1, options.workers))
        let stop = FirstFailure()
        let workers = WorkerThreads(count: max(1, options.workers), name: "restore") { [self] _ in
            let writer = ContentWriter(store: store)
            while let task = queue.pop() {
                if stop.isSet { continue }
                do {
                    let written = try writer.write(task.entry.path, task.entry.node, range: task.chunks, offset: task.offset)
                    lock.withLock { bytesWritten += written }
                    if task.file.finishOne() { try applyMetadata(task.entry, owner: owner) }
                } catch let e as StoreError {
                    noteDamage(e, file: task.entry.path)
                    if task.file.markDamaged() { task.entry.path.withCString { _ = unlink($0) } }
                    if !options.skipDamaged { stop.set(e) }
                    _ = task.file.finishOne()
                } catch {
                    stop.set(error)
                }
            }
        }

        var hardLinks: [HardLinkKey: PathBytes] = [:]
        do {
            for entry in plan {
                if stop.isSet { break }
                switch entry.node.kind {
                case .directory:
                    summary.directories += 1
                    try make(entry.path, "create directory") { mkdir($0, 0o700) }
                case .file:
                    summary.files += 1
                    let key = HardLinkKey(device: entry.node.device, inode: entry.node.inode)
                    if entry.node.links > 1, let first = hardLinks[key] {
                        try removeExisting(entry.path)
                        try make(entry.path, "link") { p in first.withCString { link($0, p) } }
                        continue
                    }
                    if entry.node.links > 1 { hardLinks[key] = entry.path }
                    try removeExisting(entry.path)
                    let fd = entry.path.withCString { open($0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
                    if fd < 0 { throw FileSystem.Failure(path: entry.path, operation: "create", code: errno) }
                    let rc = ftruncate(fd, off_t(entry.node.size))
                    let code = errno
                    close(fd)
                    if rc != 0 { throw FileSystem.Failure(path: entry.path, operation: "size", code: code) }
                    let tasks = split(entry)
                    let countdown = FileCountdown(tasks.count)
                    for t in tasks { queue.push(RestoreTask(entry: entry, chunks: t.chunks, offset: t.offset, file: countdown)) }
                case .symlink:
                    summary.otherEntries += 1
                    try removeExisting(entry.path)
                    try make(entry.path, "create symlink") { p in
                        PathBytes(entry.node.linkTarget ?? []).withCString { symlink($0, p) }
                    }
                    try applyMetadata(entry, owner: owner)
                case .fifo:
                    summary.otherEntries += 1
                    try removeExisting(entry.path)
                    try make(entry.path, "create fifo") { mkfifo($0, 0o600) }
                    try applyMetadata(entry, owner: owner)
                case .characterDevice, .blockDevice:
                    summary.otherEntries += 1
                    try removeExisting(entry.path)
                    let type: mode_t = entry.node.kind == .characterDevice ? Glibc.S_IFCHR : Glibc.S_IFBLK
                    try make(entry.path, "create device") { mknod($0, type | 0o600, dev_t(entry.node.rdev ?? 0)) }
                    try applyMetadata(entry, owner: owner)
                case .socket:
                    summary.otherEntries += 1  // a socket is recreated by the program that listens on it
                }
            }
        } catch {
            stop.set(error)
        }
        queue.close()
        workers.join()
        if let error = stop.error, !(error is StoreError) { throw error }

        let damage = lock.withLock {
            damagedObjects.keys.sorted().map { DamageReport(object: $0, reason: damagedObjects[$0]!, affectedFiles: (damagedFiles[$0] ?? []).sorted()) }
        } + treeDamage + damagedIndex
        if !damage.isEmpty && !options.skipDamaged {
            // Name every file the damaged chunks affect, not only the ones a worker happened to reach.
            throw RestoreError.damaged(completeReports(damage, plan: plan))
        }
        for entry in plan.reversed() where entry.node.kind == .directory {
            try applyMetadata(entry, owner: owner)
        }
        summary.damage = damage
        summary.warnings = lock.withLock { warnings }
        summary.bytesWritten = lock.withLock { bytesWritten }
        let elapsed = ContinuousClock.now - clock
        summary.durationSeconds = elapsed.seconds
        return summary
    }

    /// A part of a file to restore: chunks `chunks`, the first at file offset `offset`.
    struct RestoreTask {
        var entry: Entry
        var chunks: Range<Int>
        var offset: Int
        var file: FileCountdown
    }

    /// Files larger than this are restored in parts by several workers.
    static let partSize = 32 << 20

    /// Splits a file's chunks into parts of about `partSize` bytes.
    private func split(_ entry: Entry) -> [(chunks: Range<Int>, offset: Int)] {
        let content = entry.node.content ?? []
        guard entry.node.size > UInt64(Self.partSize) else { return [(0..<content.count, 0)] }
        var parts: [(chunks: Range<Int>, offset: Int)] = []
        var first = 0, partStart = 0, offset = 0
        for (i, id) in content.enumerated() {
            guard let length = store.index.lookup(id).map({ Int($0.entry.rawLength) }) else {
                return parts + [(first..<content.count, partStart)]  // the worker reports the missing chunk
            }
            offset += length
            if offset - partStart >= Self.partSize {
                parts.append((first..<(i + 1), partStart))
                first = i + 1
                partStart = offset
            }
        }
        if first < content.count || parts.isEmpty { parts.append((first..<content.count, partStart)) }
        return parts
    }

    struct HardLinkKey: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    // MARK: Plan

    private func find(_ path: String, in root: ChunkID) throws -> Node {
        var tree = try store.loadTree(root)
        let parts = PathBytes(path).components
        guard !parts.isEmpty else { throw RestoreError.pathNotInSnapshot(path) }
        for (i, part) in parts.enumerated() {
            guard let node = tree.nodes.first(where: { $0.nameBytes == part }) else {
                throw RestoreError.pathNotInSnapshot(path)
            }
            if i == parts.count - 1 { return node }
            guard let sub = node.subtree else { throw RestoreError.pathNotInSnapshot(path) }
            tree = try store.loadTree(sub)
        }
        throw RestoreError.pathNotInSnapshot(path)
    }

    private func walk(node: Node, at path: PathBytes, into plan: inout [Entry], damage: inout [DamageReport]) throws {
        var node = node
        if node.contentLists != nil {  // a large file: its chunk ids are read from its content lists
            do {
                node.content = try store.content(of: node)
            } catch let e as StoreError {
                damage.append(DamageReport(object: "a content list of \(path)", reason: "\(e)", affectedFiles: [path.description]))
                node.content = []
            }
            node.contentLists = nil
        }
        plan.append(Entry(path: path, node: node))
        if node.kind == .directory, let sub = node.subtree {
            try walk(tree: sub, at: path, display: path.description, into: &plan, damage: &damage)
        }
    }

    private func walk(tree id: ChunkID, at path: PathBytes, display: String, into plan: inout [Entry], damage: inout [DamageReport]) throws {
        let tree: Tree
        do {
            tree = try store.loadTree(id)
        } catch let e as StoreError {
            damage.append(DamageReport(object: "tree \(id)", reason: "\(e)", affectedFiles: ["everything under \(path)"]))
            return
        }
        for node in tree.nodes {
            guard Self.isSafe(node.nameBytes) else {
                throw RestoreError.unsafeName(entry: String(decoding: node.nameBytes, as: UTF8.self), directory: display)
            }
            try walk(node: node, at: path.appending(node.nameBytes), into: &plan, damage: &damage)
        }
    }

    /// A name is safe when it is one path component that stays inside its directory.
    static func isSafe(_ name: [UInt8]) -> Bool {
        !name.isEmpty && name != [46] && name != [46, 46] && !name.contains(UInt8(ascii: "/")) && !name.contains(0)
    }

    private func completeReports(_ reports: [DamageReport], plan: [Entry]) -> [DamageReport] {
        reports.map { report in
            var r = report
            // "blob <id> in pack <pack>" or "missing blob <id>": the id follows the word "blob".
            let words = report.object.split(separator: " ")
            if let at = words.firstIndex(of: "blob"), at + 1 < words.count, let id = ChunkID(hex: String(words[at + 1])) {
                let files = plan.filter { $0.node.content?.contains(id) == true }.map(\.path.description)
                if !files.isEmpty { r.affectedFiles = files }
            }
            return r
        }
    }

    // MARK: Content

    static func isZero(_ b: UnsafeRawBufferPointer) -> Bool {
        let words = b.count / 8
        let p = b.baseAddress!
        var acc: UInt64 = 0
        for i in 0..<words { acc |= p.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) }
        for i in (words * 8)..<b.count { acc |= UInt64(b[i]) }
        return acc == 0
    }

    private func noteDamage(_ error: StoreError, file: PathBytes) {
        let object: String
        switch error {
        case .damagedBlob(let id, let pack, _): object = "blob \(id) in pack \(pack)"
        case .missingBlob(let id): object = "missing blob \(id)"
        case .damagedPack(let pack, _): object = "pack \(pack)"
        default: object = "store"
        }
        lock.withLock {
            damagedObjects[object] = damagedObjects[object] ?? "\(error)"
            damagedFiles[object, default: []].append(file.description)
        }
    }

    // MARK: Files and metadata

    private func prepareTarget(_ target: PathBytes) throws {
        var st = stat()
        if target.withCString({ stat($0, &st) }) != 0 {
            if errno != ENOENT { throw FileSystem.Failure(path: target, operation: "stat", code: errno) }
            do {
                try FileManager.default.createDirectory(atPath: target.description, withIntermediateDirectories: true)
            } catch {
                throw RestoreError.target("cannot create the target directory \(target): \(error.localizedDescription)")
            }
            return
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw RestoreError.target("the target \(target) is not a directory") }
        if !options.overwrite, !(try FileSystem.list(target)).isEmpty { throw RestoreError.targetNotEmpty(target.description) }
    }

    private func make(_ path: PathBytes, _ what: String, _ call: (UnsafePointer<CChar>) -> Int32) throws {
        if path.withCString(call) != 0 {
            let code = errno
            if code == EEXIST && what == "create directory" {
                var st = stat()
                if path.withCString({ lstat($0, &st) }) == 0 && st.st_mode & S_IFMT == S_IFDIR { return }
            }
            throw FileSystem.Failure(path: path, operation: what, code: code)
        }
    }

    /// With --overwrite, removes a non-directory in the way.
    private func removeExisting(_ path: PathBytes) throws {
        guard options.overwrite else { return }
        var st = stat()
        guard path.withCString({ lstat($0, &st) }) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            throw RestoreError.target("cannot overwrite directory \(path) with a non-directory: remove it first")
        }
        if path.withCString({ unlink($0) }) != 0 { throw FileSystem.Failure(path: path, operation: "remove", code: errno) }
    }

    private func applyMetadata(_ entry: Entry, owner: Bool) throws {
        do {
            try FileSystem.applyMetadata(entry.path, entry.node, owner: owner)
        } catch let e as FileSystem.Failure {
            lock.withLock { warnings.append(e.description) }
        }
    }
}
