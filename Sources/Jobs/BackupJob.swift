import ChunkStore
import DataMover
import Foundation
import ShadowCopy

/// One backup run end to end: the coordinator's shadow copy set feeds the data mover, and the session
/// report (writers, components, provider, freeze window) goes into the snapshot record.
public struct BackupJob: Sendable {
    /// What the data mover backs up.
    public var backup: BackupOptions
    /// false: read the live files (`--no-shadow-copy`).
    public var useShadowCopy = true
    /// How the shadow copy session runs (time limits, retries, provider).
    public var coordinator = CoordinatorOptions()
    /// Which writers take part.
    public var discovery = WriterDiscovery()

    /// A job for `backup`, with a shadow copy session by default.
    public init(backup: BackupOptions) { self.backup = backup }

    /// What the job did.
    public struct Outcome: Sendable {
        /// The snapshot committed.
        public var result: BackupResult
        /// The shadow copy session's report (nil when files were read live).
        public var session: SessionReport?
        /// Things the user should know (live reads, nested subvolumes, orphans cleaned).
        public var notes: [String]
    }

    /// Takes the shadow copy set (writers frozen only around the commit), backs the shadow copy up into `store`, then completes or aborts the writers' backup and releases the set.
    public func run(store: Store) throws -> Outcome {
        guard useShadowCopy else {
            return Outcome(result: try Backup(store: store, options: backup).run(), session: nil, notes: [])
        }
        let writers = try discovery.writers()
        guard Coordinator.needsShadowCopy(paths: backup.paths, writers: writers, options: coordinator) else {
            let result = try Backup(store: store, options: backup).run()
            return Outcome(result: result, session: nil, notes: ["no writers and no snapshot-capable filesystem: files are read live, not from a shadow copy"])
        }
        // Fail before writers are disturbed: the store must not be locked by a prune, and every path exist.
        try StoreLock.checkAvailable(store, exclusive: false)
        for p in backup.paths where !FileManager.default.fileExists(atPath: p) {
            var st = stat()
            if lstat(p, &st) != 0 { throw BackupError.pathMissing(p, String(cString: strerror(errno))) }
        }
        let session = try Coordinator(writers: writers, options: coordinator).createShadowCopySet(paths: backup.paths)
        var succeeded = false
        defer { session.complete(succeeded: succeeded) }
        session.annotateFreezeInfo()

        var options = backup
        options.paths = Array(Set(backup.paths + session.componentFiles)).sorted()
        options.source.subtrees = session.subtreeMappings.map { (original: $0.original, read: $0.shadow) }
        for (path, captured) in session.capturedFiles {
            options.source.files[path] = BackupSource.CapturedMetadata(
                read: captured.shadowPath, stat: captured.stat, xattrs: captured.xattrs.map { ExtendedAttribute(name: $0.name, value: $0.value) })
        }
        // A writer's files read live, now, instead of from the shadow copy (a database's WAL up to the
        // end of its backup).
        for path in session.filesAfterSnapshot {
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            options.paths.append(path)
            options.source.files[path] = BackupSource.CapturedMetadata(read: path, stat: st, xattrs: [])
        }
        options.paths = Array(Set(options.paths)).sorted()
        let rules = session.componentRules
        func rule(_ d: FileDescriptor) -> ExcludeRule { ExcludeRule(directory: d.path, pattern: d.filespec, recursive: d.recursive) }
        options.source.components = rules.all.map(rule)
        options.source.capturedOnly = rules.capturedOnly.map(rule)
        options.source.transient = rules.transient.map(rule)
        options.excludedPaths.formUnion(session.shadowDirectories)
        options.excludeRules += session.excludes.map { ExcludeRule(directory: $0.path, pattern: $0.filespec, recursive: $0.recursive) }
        var report = session.report
        for w in report.components.writers.indices {
            for c in report.components.writers[w].components.indices where report.components.writers[w].components[c].selected {
                report.components.writers[w].components[c].backupSucceeded = true
            }
        }
        let final = report
        options.shadowCopy = { _ in try? JSONValue(encoding: final) }
        let result = try Backup(store: store, options: options).run()
        succeeded = true
        session.complete(succeeded: true)
        return Outcome(result: result, session: session.report, notes: session.report.warnings)
    }
}
