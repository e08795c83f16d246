import ChunkStore
import DataMover
import Foundation
import JSONFormat
import JobFormat
import ObjectStorage
import ShadowCopy

/// One run of a job: create the store if needed, back up through a shadow copy session, apply
/// retention (and prune when asked), and append the run to the store's job history.
public struct JobRunner: Sendable {
    /// The job run.
    public let job: JobFile

    /// A runner of `job`.
    public init(job: JobFile) { self.job = job }

    /// One line of job history (`jobs/<job>/<start>-<id>.json` in the store).
    public struct HistoryRecord: Codable, Sendable {
        /// The job's name.
        public var job: String
        /// When the run started.
        public var start: Date
        /// When it ended.
        public var end: Date
        /// success, partial (some files unreadable: exit 3) or failed.
        public var result: String
        /// The snapshot it made.
        public var snapshot: String?
        /// Bytes the backup read.
        public var bytesRead: UInt64 = 0
        /// Bytes of new data it added.
        public var bytesAdded: UInt64 = 0
        /// How long writers were held.
        public var freezeWindowMs: Double?
        /// Snapshots the retention rules removed.
        public var forgotten = 0
        /// Why it failed.
        public var error: String?
    }

    /// What a run did.
    public struct Outcome: Sendable {
        /// The record written to the job's history.
        public var history: HistoryRecord
        /// The backup's outcome, when it got that far.
        public var backup: BackupJob.Outcome?
    }

    /// Opens (or creates) the store, backs up, applies retention (and prune), and records the run in the store's job history, failed or not.
    public func run() throws -> Outcome {
        let start = Date()
        let store: Store
        if try StoreLocation.exists(job.store, credentialsFile: job.credentialsFile) {
            store = try StoreLocation.open(job.store, credentialsFile: job.credentialsFile, secret: job.secret)
        } else {
            // A job creates its store encrypted, with the job's password (file or command).
            guard job.secret.isGiven else {
                throw JobRunError.noSecretForNewStore(job: job.name, store: job.store)
            }
            store = try StoreLocation.initialize(
                job.store, credentialsFile: job.credentialsFile, parameters: job.chunker, codec: job.codec ?? .default, encryption: job.secret)
        }
        var record = HistoryRecord(job: job.name, start: start, end: start, result: "failed")
        do {
            var options = BackupOptions(paths: job.sources)
            options.codec = job.codec
            options.oneFileSystem = job.oneFileSystem
            options.tags = ["job:\(job.name)"]
            options.excludeRules = job.excludes.map { ExcludeRule(directory: "/", pattern: $0, recursive: true) }
            var backup = BackupJob(backup: options)
            backup.useShadowCopy = job.useShadowCopy
            backup.coordinator = job.coordinator
            backup.discovery = job.discovery
            let outcome = try backup.run(store: store)
            let s = outcome.result.record.summary
            record.snapshot = outcome.result.snapshotID
            record.bytesRead = s.bytesProcessed
            record.bytesAdded = s.bytesAdded
            record.freezeWindowMs = outcome.session?.freezeWindow?.totalMs
            record.result = s.errors.isEmpty ? "success" : "partial"
            if !job.retention.isEmpty { record.forgotten = try forget(store) }
            if job.prune { _ = try Pruner(store: store).run() }
            record.end = Date()
            try appendHistory(record, to: store)
            return Outcome(history: record, backup: outcome)
        } catch {
            record.error = "\(error)"
            record.end = Date()
            try? appendHistory(record, to: store)
            throw error
        }
    }

    /// Applies the retention policy to this job's snapshots (same host and paths).
    private func forget(_ store: Store) throws -> Int {
        let lock = try StoreLock.acquire(store, exclusive: true, purpose: "job \(job.name) forget")
        defer { lock.release() }
        let mine = try store.snapshots().records.filter { $0.record.tags.contains("job:\(job.name)") }
        let groups = Dictionary(grouping: mine) { "\($0.record.hostname)\u{0}\($0.record.paths.joined(separator: "\u{0}"))" }
        var removed = 0
        for (_, group) in groups {
            let d = job.retention.apply(group.map { .init(id: $0.id, time: $0.record.time, tags: $0.record.tags) })
            guard !d.keep.isEmpty else { continue }  // never empties a group
            for id in d.remove { try store.deleteSnapshot(id: id) }
            removed += d.remove.count
        }
        return removed
    }

    func appendHistory(_ r: HistoryRecord, to store: Store) throws {
        let name = "\(Timestamp(r.start).iso8601)-\(UUID().uuidString.prefix(8).lowercased()).json"  // sorts by start
        try store.appendJobRun(job: job.name, name: name, bytes: Array(try JSONFormat.encoder().encode(r)))
    }

    /// Every run of every job in the store, oldest first, and the records that could not be read, named.
    public static func history(_ store: Store) throws -> (records: [HistoryRecord], damaged: [String]) {
        let (stored, damaged) = try store.jobRuns()
        var unreadable = damaged
        let runs = stored.compactMap { run in
            let record = try? JSONFormat.decoder().decode(HistoryRecord.self, from: Data(run.bytes))
            if record == nil { unreadable.append("job record \(ObjectKey.jobRun(run.job, run.name)) is not a valid record") }
            return record.map { (run.name, $0) }
        }
        // Names start with the start time to the nanosecond.
        return (runs.sorted { $0.0 < $1.0 }.map(\.1), unreadable)
    }
}

/// Why a job could not run.
public enum JobRunError: Error, CustomStringConvertible, Sendable {
    /// The job's store does not exist and the job names nothing to encrypt a new one with.
    case noSecretForNewStore(job: String, store: String)

    /// What went wrong and what to do.
    public var description: String {
        switch self {
        case .noSecretForNewStore(let job, let store):
            "job \(job): the store \(store) does not exist, and the job names no password_file or password_command to encrypt a new one with: add one, or create the store with `shadowmover init`"
        }
    }
}
