import CLinux
import ChunkStore
import Compression
import Foundation

/// Restores a snapshot, in four steps: walk its trees (every tree checked against the format's
/// validity rules) into a plan; create its entries in plan order, each relative to its parent
/// directory's descriptor (`TargetDirectory`: nothing is ever reached through a symlink), while
/// `workers` threads write file contents through the descriptor that created each file (every chunk
/// read, decompressed and verified, then written at its offset, all-zero chunks of sparse files left
/// as holes); and finally apply directory metadata, deepest first. Holds a shared store lock, so a
/// prune cannot remove the packs it reads.
///
/// Directories, links and special files are made on the planning thread; small files are handed to
/// the workers in batches of one directory, and the workers create them too (creating a file is most
/// of the cost of a small one, and one thread creating 100,000 files would leave the others idle);
/// large files are created on the planning thread and written in parts by several workers.
public final class Restorer: @unchecked Sendable {  // mutable state is guarded by `lock`
    /// The store restored from.
    public let store: Store
    /// Where to and how.
    public let options: RestoreOptions
    let lock = NSLock()
    private var damagedObjects: [String: (reason: String, blob: ChunkID?)] = [:]  // object → why
    private var damagedFiles: [String: [String]] = [:]  // object → files
    var warnings: [String] = []
    private var bytesWritten: UInt64 = 0
    var setIDStripped = 0
    private let meter = ProgressMeter(action: "restore")

    /// A restore from `store` as `options` say.
    public init(store: Store, options: RestoreOptions) {
        self.store = store
        self.options = options
    }

    /// One entry to restore. `parent` is the plan index of its directory (-1: the target itself).
    struct Entry {
        var path: PathBytes
        var parent: Int
        var node: Node
        var name: [UInt8] { node.nameBytes }
    }

    /// Restores `record` (or `options.subPath` of it): plans the entries, creates them with the workers writing contents, then applies directory metadata. Damaged data stops it unless `skipDamaged`.
    public func run(snapshot record: SnapshotRecord) throws -> RestoreSummary {
        let clock = ContinuousClock.now
        let storeLock = try lockStore()
        defer { storeLock?.release() }
        let damagedIndex = store.index.damagedSegments.map {
            DamageReport(object: "index segment \($0.name)", reason: "\($0.error)", affectedFiles: ["any file whose chunks it lists"])
        }
        if !damagedIndex.isEmpty && !options.skipDamaged { throw RestoreError.damagedIndex(damagedIndex) }
        let target = PathBytes(options.target)
        try prepareTarget(target)
        let root = try TargetDirectory.openTarget(target)
        let (plan, treeDamage) = try makePlan(record, target: target)
        if !treeDamage.isEmpty && !options.skipDamaged { throw RestoreError.damaged(treeDamage) }
        var (fileCount, fileBytes) = (0, UInt64(0))  // counted in place: a filtered copy of a 100,000-file plan is ~20 MB
        for entry in plan where entry.node.kind == .file {
            fileCount += 1
            fileBytes += entry.node.size
        }
        meter.found(bytes: fileBytes, files: fileCount)
        meter.totalKnown()
        meter.start(options.progress)
        defer { meter.stop() }

        let shared = sharedChunks(plan)
        var summary = try createEntries(plan, in: root, shared: shared)
        summary.bytesReused = shared.reusedBytes
        let damage =
            lock.withLock {
                damagedObjects.keys.sorted().map {
                    DamageReport(
                        object: $0, reason: damagedObjects[$0]!.reason, affectedFiles: (damagedFiles[$0] ?? []).sorted(), blob: damagedObjects[$0]!.blob)
                }
            } + treeDamage + damagedIndex
        if !damage.isEmpty && !options.skipDamaged {
            // Name every file the damaged chunks affect, not only the ones a worker happened to reach.
            throw RestoreError.damaged(completeReports(damage, plan: plan))
        }
        try applyDirectoryMetadata(plan, root: root)
        summary.damage = damage
        summary.warnings = lock.withLock {
            warnings
                + (setIDStripped == 0
                    ? []
                    : [
                        "setuid/setgid bits were left off \(setIDStripped) file(s): without root their owners cannot be restored (run the restore as root to keep them)"
                    ])
        }
        summary.bytesWritten = lock.withLock { bytesWritten }
        summary.durationSeconds = (ContinuousClock.now - clock).seconds
        return summary
    }

    /// A shared lock, so that prune waits for the restore instead of repacking the packs it reads. A
    /// store on a read-only filesystem cannot hold a lock; nothing can prune it either, so the restore
    /// goes on without one and says so.
    private func lockStore() throws -> StoreLock? {
        do {
            return try StoreLock.acquire(store, exclusive: false, purpose: "restore")
        } catch StoreError.io(_, _, let code) where code == EROFS {
            lock.withLock { warnings.append("the store is on a read-only filesystem: restoring without a lock") }
            return nil
        }
    }

    // MARK: Creating entries

    /// Work for a restore worker.
    enum RestoreTask {
        /// A part of a large file: chunks `chunks`, the first at file offset `offset`.
        case part(RestoringFile, chunks: Range<Int>, offset: Int)
        /// Small files of one directory, each created, written whole and closed by the worker.
        case files(TargetDirectory, [Entry])
    }

    /// Small files are batched up to this many per task, or `batchBytes` of content.
    static let batchFiles = 256
    static let batchBytes = 8 << 20

    /// Creates the entries of `plan` below `root` in plan order (a directory before what it holds):
    /// directories, links, special files and large files on this thread, handing large files' parts to
    /// the workers as each is created; small files go to the workers in batches, who create them.
    private func createEntries(_ plan: [Entry], in root: TargetDirectory, shared: SharedChunks) throws -> RestoreSummary {
        var summary = RestoreSummary()
        let owner = geteuid() == 0
        let queue = BoundedQueue<RestoreTask>(capacity: 4 * max(1, options.workers))
        let stop = FirstFailure()
        let workers = startWorkers(queue: queue, stop: stop, owner: owner, shared: shared)
        var batch = SmallFiles()
        // The directories from the target down to the entry being created: plan order is depth first,
        // so an entry's parent is always on this stack.
        var open: [(entry: Int, directory: TargetDirectory)] = [(-1, root)]
        var hardLinks: [HardLinkKey: Int] = [:]  // first entry restored for each linked inode
        do {
            for (index, entry) in plan.enumerated() {
                if stop.isSet { break }
                while let top = open.last, top.entry != entry.parent { open.removeLast() }
                guard let directory = open.last?.directory else {  // the plan is depth first: its parent is open
                    throw RestoreError.target("internal error: the directory of \(entry.path) is not open; please report")
                }
                switch entry.node.kind {
                case .directory:
                    summary.directories += 1
                    open.append((index, try directory.makeDirectory(entry.name, overwrite: options.overwrite)))
                case .file where entry.node.links <= 1 && entry.node.size < ContentWriter.directThreshold:
                    summary.files += 1
                    if let full = batch.add(entry, in: directory) { handOver(full, to: queue) }
                case .file:
                    summary.files += 1
                    try createLargeOrLinkedFile(entry, index: index, in: directory, plan: plan, open: open, hardLinks: &hardLinks, queue: queue)
                case .symlink, .fifo, .characterDevice, .blockDevice, .socket:
                    summary.otherEntries += 1
                    try createSpecial(entry, in: directory, owner: owner)
                }
            }
            if let last = batch.take() { handOver(last, to: queue) }
        } catch {
            stop.set(error)
        }
        batch = SmallFiles()
        open.removeAll()
        queue.close()
        workers.join()
        if let error = stop.error, !(error is StoreError) { throw error }
        return summary
    }

    /// The workers: each writes parts of large files and batches of small ones until the queue closes.
    private func startWorkers(queue: BoundedQueue<RestoreTask>, stop: FirstFailure, owner: Bool, shared: SharedChunks) -> WorkerThreads {
        WorkerThreads(count: max(1, options.workers), name: "restore") { [self] _ in
            let writer = ContentWriter(store: store, shared: shared)
            while let task = queue.pop() {
                if stop.isSet { continue }
                switch task {
                case .part(let file, let chunks, let offset):
                    restore(file, chunks: chunks, offset: offset, with: writer, owner: owner, stop: stop)
                case .files(let directory, let entries):
                    for entry in entries where !stop.isSet {
                        do {
                            try directory.clear(entry.name, overwrite: options.overwrite)
                            let file = try createFile(entry, in: directory, parts: 1, presize: entry.node.sparse == true)  // a hole at the end
                            restore(file, chunks: 0..<(entry.node.content?.count ?? 0), offset: 0, with: writer, owner: owner, stop: stop)
                        } catch {
                            stop.set(error)
                        }
                    }
                }
            }
            writer.drain()
        }
    }

    /// Small files waiting to be handed to the workers, all in one directory.
    struct SmallFiles {
        private var directory: TargetDirectory?
        private var entries: [Entry] = []
        private var bytes: UInt64 = 0

        /// Adds `entry`. - Returns: the batch to hand over first, when `entry` starts a new one.
        mutating func add(_ entry: Entry, in target: TargetDirectory) -> (TargetDirectory, [Entry])? {
            var full: (TargetDirectory, [Entry])?
            if directory !== target || entries.count >= Restorer.batchFiles || bytes >= UInt64(Restorer.batchBytes) {
                full = take()
                directory = target
            }
            entries.append(entry)
            bytes += entry.node.size
            return full
        }

        /// The batch so far (nil when empty), leaving this empty.
        mutating func take() -> (TargetDirectory, [Entry])? {
            defer { self = SmallFiles() }
            guard let directory, !entries.isEmpty else { return nil }
            return (directory, entries)
        }
    }

    /// Queues a batch of small files; the disk starts on its blobs as it is queued (look-ahead).
    private func handOver(_ batch: (directory: TargetDirectory, entries: [Entry]), to queue: BoundedQueue<RestoreTask>) {
        store.prefetch(batch.entries.lazy.flatMap { $0.node.content ?? [] })
        queue.push(.files(batch.directory, batch.entries))
    }

    /// A file linked to one already restored becomes a hard link; any other (a large file) is created
    /// here, sized, and its parts queued for the workers.
    private func createLargeOrLinkedFile(
        _ entry: Entry, index: Int, in directory: TargetDirectory, plan: [Entry], open: [(entry: Int, directory: TargetDirectory)],
        hardLinks: inout [HardLinkKey: Int], queue: BoundedQueue<RestoreTask>
    ) throws {
        try directory.clear(entry.name, overwrite: options.overwrite)
        let key = HardLinkKey(device: entry.node.device, inode: entry.node.inode)
        if entry.node.links > 1, let first = hardLinks[key] {
            let firstDirectory = try openDirectory(of: first, plan: plan, stack: open)
            try directory.makeLink(entry.name, to: plan[first].name, in: firstDirectory)
            return
        }
        if entry.node.links > 1 { hardLinks[key] = index }
        let parts = split(entry)
        let file = try createFile(entry, in: directory, parts: parts.count, presize: true)
        for part in parts {
            // Look-ahead: the disk starts on a part's blobs when it is queued, a few tasks before a
            // worker needs them.
            store.prefetch((entry.node.content ?? [])[part.chunks])
            queue.push(.part(file, chunks: part.chunks, offset: part.offset))
        }
    }

    /// Creates a regular file, to be written in `parts`; `presize` sets its size first (parts written
    /// in any order; a sparse file's hole at its end).
    ///
    /// A file written with O_DIRECT gets its blocks allocated as well (`fallocate`): ext4 lets direct
    /// writes into allocated blocks run side by side under a shared inode lock, where each write into
    /// a hole takes it exclusively for as long as the disk takes — two workers' parts of one file would
    /// wait on each other, and so would a part's ends written through the page cache. Where the
    /// filesystem cannot allocate ahead, only the size is set.
    private func createFile(_ entry: Entry, in directory: TargetDirectory, parts: Int, presize: Bool) throws -> RestoringFile {
        let file = RestoringFile(fd: try directory.createFile(entry.name), directory: directory, entry: entry, parts: parts)
        guard presize else { return file }
        let size = off_t(entry.node.size)
        if ContentWriter.writesDirect(entry.node) {
            let error = fallocate(file.fd, 0, 0, size) == 0 ? 0 : errno
            if [ENOSPC, EDQUOT, EFBIG].contains(error) { throw FileSystem.Failure(path: entry.path, operation: "allocate", code: error) }
            if error == 0 { return file }
        }
        if ftruncate(file.fd, size) != 0 { throw FileSystem.Failure(path: entry.path, operation: "size", code: errno) }
        return file
    }

    /// Symlinks, FIFOs and devices, with their metadata. A socket is not made: the program that
    /// listens on it makes it again.
    private func createSpecial(_ entry: Entry, in directory: TargetDirectory, owner: Bool) throws {
        guard entry.node.kind != .socket else { return }
        try directory.clear(entry.name, overwrite: options.overwrite)
        if entry.node.kind == .symlink {
            try directory.makeSymlink(entry.name, to: entry.node.linkTarget ?? [])
        } else {
            let type: mode_t =
                switch entry.node.kind {
                case .characterDevice: Glibc.S_IFCHR
                case .blockDevice: Glibc.S_IFBLK
                default: Glibc.S_IFIFO
                }
            try directory.makeNode(entry.name, type: type, device: entry.node.rdev ?? 0)
        }
        try applyMetadata(entry, in: directory, owner: owner)
    }

    /// Writes one part of a file on a worker thread; the file's last part applies its metadata once
    /// its bytes are written (which may be during the worker's next part: `ContentWriter.write`).
    private func restore(_ file: RestoringFile, chunks: Range<Int>, offset: Int, with writer: ContentWriter, owner: Bool, stop: FirstFailure) {
        let entry = file.entry
        writer.write(to: file, path: entry.path, entry.node, range: chunks, offset: offset) { [self] result in
            do {
                let written = try result.get()
                lock.withLock { bytesWritten += written }
                meter.done(Int(written))
                if file.finishOne() {
                    meter.finishedFile()
                    try applyMetadata(entry, fd: file.fd, owner: owner)
                }
            } catch let e as StoreError {
                noteDamage(e, file: entry.path)
                if file.markDamaged() { try? file.directory.remove(entry.name) }
                if !options.skipDamaged { stop.set(e) }
                _ = file.finishOne()
            } catch {
                stop.set(error)
            }
        }
    }

    /// Opens the directory holding plan entry `index` by walking down from the target one component at
    /// a time, never following a symlink (hard links and directory metadata need directories that are
    /// no longer on the creation stack). Reuses a directory still on `stack`.
    func openDirectory(of index: Int, plan: [Entry], stack: [(entry: Int, directory: TargetDirectory)]) throws -> TargetDirectory {
        let parent = plan[index].parent
        if let held = stack.last(where: { $0.entry == parent }) { return held.directory }
        var chain: [Int] = []
        var at = parent
        while at >= 0 {
            chain.append(at)
            at = plan[at].parent
        }
        guard var directory = stack.first?.directory else { throw RestoreError.target("internal: no target directory open") }
        for step in chain.reversed() { directory = try directory.openDirectory(plan[step].name) }
        return directory
    }

    /// The uses of every chunk the plan writes: each regular file's content, a hard-linked file's
    /// once (its other names are links).
    private func sharedChunks(_ plan: [Entry]) -> SharedChunks {
        var linked: Set<HardLinkKey> = []
        var contents: [[ChunkID]] = []
        for entry in plan where entry.node.kind == .file {
            if entry.node.links > 1 && !linked.insert(HardLinkKey(device: entry.node.device, inode: entry.node.inode)).inserted { continue }
            contents.append(entry.node.content ?? [])
        }
        return SharedChunks(contents: contents, capacity: options.sharedChunkBytes)
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

    // MARK: Content

    private func noteDamage(_ error: StoreError, file: PathBytes) {
        let object: String
        var blob: ChunkID?
        switch error {
        case .damagedBlob(let id, let pack, _): (object, blob) = ("blob \(id) in pack \(pack)", id)
        case .missingBlob(let id): (object, blob) = ("missing blob \(id)", id)
        case .damagedPack(let pack, _): object = "pack \(pack)"
        default: object = "store"
        }
        lock.withLock {
            damagedObjects[object] = damagedObjects[object] ?? ("\(error)", blob)
            damagedFiles[object, default: []].append(file.description)
        }
    }
}
