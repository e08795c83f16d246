import ChunkStore
import Compression
import Foundation

/// Backs up paths into a store (DESIGN.md §1). The stages, each in its own file:
///
/// 1. `Scanner` walks the paths on the calling thread; the `FilesCache` spares unchanged files;
/// 2. `FileReader`s on `workers` threads read and cut files (FastCDC) — a large file is cut by one
///    and its chunks hashed by all, through `BackupLanes`;
/// 3. `ChunkSaver`s hash, deduplicate and compress chunks into pack buffers, which the `PackWriter`
///    seals and writes;
/// 4. `TreeSaver`s store each directory's tree as soon as its last entry is saved;
/// 5. the index segment, and last the snapshot record: the commit point.
public final class Backup: @unchecked Sendable {
    /// The store backed up into.
    public let store: Store
    /// What to back up and how.
    public let options: BackupOptions
    let log = BackupLog()
    let counter = ProgressMeter(action: "backup")

    /// A backup of `options` into `store`.
    public init(store: Store, options: BackupOptions) {
        self.store = store
        self.options = options
    }

    /// Runs the backup (the stages above) and commits its snapshot. A failure leaves the store as it was: the packs it wrote are removed.
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
        let lanes = BackupLanes(workers: workerCount, progress: counter)
        counter.start(options.progress)
        defer { counter.stop() }
        let failure = FirstFailure()

        let workers = startWorkers(savers: Array(savers.dropFirst()), lanes: lanes, failure: failure)
        let scanner = Scanner(backup: self, saver: savers[0], lanes: lanes, failure: failure)
        let root = scanner.run(paths)
        lanes.lanes.close()
        workers.join()
        if let error = failure.error {
            packs.cancel()
            throw error
        }
        guard let tree = root.value else { throw BackupError.noPaths }
        try packs.commit()
        return try commit(tree: tree, paths: paths, started: started, summary: summary(scanner.stats, savers: savers, since: clock))
    }

    /// The workers: each takes files (and batches of a large file's chunks) until the lanes close.
    private func startWorkers(savers: [ChunkSaver], lanes: BackupLanes, failure: FirstFailure) -> WorkerThreads {
        WorkerThreads(count: savers.count, name: "backup") { [self] i in
            let saver = savers[i]
            let reader = FileReader(saver: saver, lanes: lanes)
            while let work = lanes.lanes.pop() {
                switch work {
                case .file(let job):
                    defer { lanes.lanes.finished() }
                    guard !failure.isSet else { continue }
                    do { try save(job, reader: reader) } catch { failure.set(error) }
                case .batch(let batch):
                    guard !failure.isSet else {
                        batch.job.fail(CancellationError())
                        batch.job.release(batch.buffer, batch: true)
                        continue
                    }
                    do { try batch.job.run(batch, saver) } catch { failure.set(error) }
                }
            }
            do { try saver.finish() } catch { failure.set(error) }
        }
    }

    /// A worker's step for one file: read, cut and save it, then complete its slot in its directory.
    private func save(_ job: Scanner.FileJob, reader: FileReader) throws {
        var node = job.node
        counter.current(job.path.description)
        defer { counter.finishedFile() }
        do {
            let (content, size) = try reader.saveFile(job.readPath, expectedSize: Int64(job.node.size))
            if size != job.node.size {
                // Recorded as read; the user learns that this file is not a consistent copy.
                log.report("\(job.path) changed size while being read (\(job.node.size) → \(size) bytes); the snapshot holds what was read")
            }
            try reader.saver.attach(content, to: &node)
            node.size = size
            try job.directory.complete(slot: job.slot, with: node, saver: reader.saver)
        } catch let failure as FileSystem.Failure {
            if !(failure.code == ENOENT && options.source.mayVanish(job.path.description)) {
                log.report(failure.code == ENOENT ? "\(job.path) disappeared before it could be read" : failure.description)
            }
            try job.directory.complete(slot: job.slot, with: nil, saver: reader.saver)
        }
    }

    /// The scanner's counts with the savers' and the errors reported.
    private func summary(_ scanned: BackupSummary, savers: [ChunkSaver], since clock: ContinuousClock.Instant) -> BackupSummary {
        var stats = scanned
        var total = ChunkSaver.SaverStats()
        for s in savers { total.merge(s.stats) }
        stats.bytesRead = total.bytesRead
        stats.chunks = total.chunks
        stats.chunksNew = total.chunksNew
        stats.bytesAdded = total.bytesAdded
        stats.bytesStored = total.bytesStored
        stats.treeBytesStored = total.treeBytesStored
        stats.errors = log.errors
        stats.durationSeconds = (ContinuousClock.now - clock).seconds
        return stats
    }

    /// Writes the snapshot record: the commit point.
    private func commit(tree: ChunkID, paths: [PathBytes], started: Date, summary: BackupSummary) throws -> BackupResult {
        var record = SnapshotRecord(
            time: started, hostname: options.hostname, username: NSUserName(), paths: paths.map(\.description),
            tree: tree, tags: options.tags, programVersion: ShadowMoverVersion.current, summary: summary)
        record.shadowCopy = options.shadowCopy?(summary)
        let id = try store.saveSnapshot(record)
        return BackupResult(snapshotID: id, record: record)
    }

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

/// What a backup could not read: files it left out or read inconsistently, reported in its summary.
final class BackupLog: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var messages: [String] = []
    func report(_ message: String) { lock.withLock { messages.append(message) } }
    var errors: [String] { lock.withLock { messages } }
}

/// The first error any thread hit; once set, everyone stops.
final class FirstFailure: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Error?
    var isSet: Bool { lock.withLock { stored != nil } }
    var error: Error? { lock.withLock { stored } }
    func set(_ e: Error) { lock.withLock { if stored == nil { stored = e } } }
}

/// The root tree's id, set by whichever thread saves the root's last entry.
final class RootTreeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var id: ChunkID?
    var value: ChunkID? { lock.withLock { id } }
    func set(_ v: ChunkID) { lock.withLock { id = v } }
}

/// The version snapshot records name.
public enum ShadowMoverVersion {
    /// This build's version.
    public static let current = "0.1.0"
}
