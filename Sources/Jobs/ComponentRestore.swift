import CSQLite
import ChunkStore
import DataMover
import DurableFile
import Foundation
import ShadowCopy

/// `restore SNAPSHOT --component WRITER[/COMPONENT]`: restores a writer's component the way its writer
/// says (VSS's restore methods), not as loose files:
///
/// - **SQLite** (restore if it can replace): the database and whichever of its -wal/-journal the
///   snapshot holds are restored into a hidden directory beside the destination, opened, checked
///   (`PRAGMA integrity_check`) and checkpointed into one file; only then is it renamed over the
///   destination, after the destination's own -wal/-shm/-journal are moved aside (an old log next to a
///   new database would be replayed into it). A database some process has open is refused unless
///   `replaceLive`. Interrupted, the destination is as it was, or — killed between moving its logs aside
///   and the rename — those logs are in the hidden directory, which says so in its name.
/// - **PostgreSQL** (restore to an alternate location): the data directory is restored into `target`
///   with its `backup_label` and `tablespace_map` (`WriterRestore`); a running cluster's own data
///   directory is refused. With `start`, the cluster is started there (`PostgresStart`).
public struct ComponentRestore {
    /// The store restored from.
    public var store: Store
    /// The snapshot restored.
    public var record: SnapshotRecord
    /// Its id (for messages).
    public var snapshotID: String
    /// `WRITER` or `WRITER/COMPONENT`: a writer by name ("SQLite Writer", "sqlite", "postgres"…) or by
    /// instance (the database path, the data directory); a component by its path or name.
    public var selector: String
    /// Where to restore to instead of the original location (PostgreSQL: required).
    public var target: String?
    /// Replace a database even though a process has it open.
    public var replaceLive = false
    /// PostgreSQL: start the restored cluster (recovery runs to the backup's end) on `port`.
    public var start = false
    /// With `start`: the port (default: the first free one from 5433).
    public var port: Int?
    /// Where exec writers are found for their restore events (`--exec-writer`, `--writers-dir`).
    public var discovery = WriterDiscovery(directory: nil)

    /// A restore of the component `selector` names.
    public init(store: Store, record: SnapshotRecord, snapshotID: String, selector: String) {
        self.store = store
        self.record = record
        self.snapshotID = snapshotID
        self.selector = selector
    }

    /// Restores the component(s). - Returns: what was done, for the user.
    public func run() throws -> [String] {
        let (writer, components) = try select()
        switch writer.classID {
        case SQLiteWriter.classID: return try restoreSQLite(writer)
        case PostgresWriter.classID: return try restorePostgres(writer, components)
        default: return try restoreThroughExecWriter(writer, components)
        }
    }

    // MARK: Selection

    /// A component's path as writers name it: `logicalPath/name`, or `name` alone.
    static func fullPath(_ c: BackupComponentsDocument.ComponentEntry) -> String {
        c.logicalPath.isEmpty ? c.name : "\(c.logicalPath)/\(c.name)"
    }

    private func select() throws -> (BackupComponentsDocument.WriterEntry, [BackupComponentsDocument.ComponentEntry]) {
        let session = try record.shadowCopy?.decode(SessionReport.self)
        let writers = session?.components.writers ?? []
        let parts = selector.split(separator: "/", maxSplits: 1).map(String.init)
        let (writerPart, componentPart) = selector.hasPrefix("/") ? (selector, nil) : (parts.first ?? "", parts.count > 1 ? parts[1] : nil)
        func names(_ w: BackupComponentsDocument.WriterEntry) -> [String] {
            let short = w.name.lowercased().replacingOccurrences(of: " writer", with: "")
            return [w.name.lowercased(), short, short == "postgresql" ? "postgres" : short, w.instanceName]
        }
        for w in writers {
            if names(w).contains(writerPart.lowercased()) || names(w).contains(writerPart) {
                let chosen = w.components.filter { c in c.selected && (componentPart == nil || c.name == componentPart || Self.fullPath(c) == componentPart) }
                if !chosen.isEmpty { return (w, chosen) }
            }
            // A whole instance path as the selector ("/srv/app.db").
            if w.instanceName == selector, let c = w.components.first(where: \.selected) { return (w, [c]) }
        }
        let held = writers.map { w in "\(w.name) (\(w.instanceName)): " + w.components.filter(\.selected).map(Self.fullPath).joined(separator: ", ") }
        throw RestoreError.componentNotFound(
            "snapshot \(snapshotID.prefix(8)) has no component '\(selector)'; it holds "
                + (held.isEmpty ? "no writers' components (it was not taken through writers)" : held.joined(separator: "; ")))
    }

    // MARK: SQLite

    private func restoreSQLite(_ writer: BackupComponentsDocument.WriterEntry) throws -> [String] {
        let source = writer.instanceName
        let name = (source as NSString).lastPathComponent
        let destination = target.map { ($0 as NSString).appendingPathComponent(name) } ?? source
        let directory = (destination as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if !replaceLive, let user = Self.processUsing([destination, destination + "-wal", destination + "-journal"]) {
            throw RestoreError.componentUnsupported(
                "the database \(destination) is open in process \(user): stop it first, or pass --replace-live to replace it under it")
        }
        let staging = directory + "/.shadowmover-restore-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false)
        var keepStaging = false
        defer { if !keepStaging { try? FileManager.default.removeItem(atPath: staging) } }

        // The database, and whichever of its logs the snapshot holds.
        for suffix in ["", "-wal", "-journal"] {
            var options = RestoreOptions(target: staging)
            options.subPath = source + suffix
            options.overwrite = true  // the staging directory is ours; each file lands in it
            do {
                _ = try Restorer(store: store, options: options).run(snapshot: record)
            } catch RestoreError.pathNotInSnapshot where !suffix.isEmpty {
                continue
            }
        }
        let staged = staging + "/" + name
        try Self.checkAndCheckpoint(staged)

        // Move the destination's logs aside (into the staging directory), then put the database in.
        var movedAside = false
        for suffix in ["-wal", "-shm", "-journal"] where FileManager.default.fileExists(atPath: destination + suffix) {
            if !movedAside {
                keepStaging = true  // from here until the rename, the old logs live only there
                movedAside = true
            }
            guard rename(destination + suffix, staging + "/old" + suffix) == 0 else {
                throw StoreError.io(path: destination + suffix, operation: "move aside", errno: errno)
            }
        }
        guard rename(staged, destination) == 0 else { throw StoreError.io(path: destination, operation: "rename into place", errno: errno) }
        try? DurableFile.fsyncDirectory(directory)
        keepStaging = false
        return [
            "restored SQLite database \(destination) from snapshot \(snapshotID.prefix(8)) (integrity_check ok\(movedAside ? "; the previous database's logs were removed" : ""))"
        ]
    }

    /// Opens the staged database (replaying a WAL it came with), checks it, and checkpoints it into its
    /// main file, so that it stands alone.
    static func checkAndCheckpoint(_ path: String) throws {
        var db: OpaquePointer?
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK, let db else {
            if let db { sqlite3_close_v2(db) }
            throw RestoreError.componentUnsupported("the restored database \(path) does not open: it is not a SQLite database; nothing was replaced")
        }
        defer { sqlite3_close_v2(db) }
        var statement: OpaquePointer?
        var result = "no answer"
        if sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &statement, nil) == SQLITE_OK {
            if sqlite3_step(statement) == SQLITE_ROW, let text = sqlite3_column_text(statement, 0) { result = String(cString: text) }
            sqlite3_finalize(statement)
        } else {
            result = String(cString: sqlite3_errmsg(db))
        }
        guard result == "ok" else {
            throw RestoreError.componentUnsupported("the restored database fails PRAGMA integrity_check (\(result)); nothing was replaced")
        }
        sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil)
    }

    /// A process (pid and name) that has one of `paths` open, from /proc.
    static func processUsing(_ paths: [String]) -> String? {
        var inodes = Set<UInt64>()
        for p in paths {
            var st = stat()
            if stat(p, &st) == 0 { inodes.insert(UInt64(st.st_dev) << 32 ^ UInt64(st.st_ino)) }
        }
        guard !inodes.isEmpty else { return nil }
        let me = getpid()
        for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let n = Int32(pid), n != me, let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            for fd in fds {
                var st = stat()
                if stat("/proc/\(pid)/fd/\(fd)", &st) == 0, inodes.contains(UInt64(st.st_dev) << 32 ^ UInt64(st.st_ino)) {
                    let name = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                    return "\(pid) (\(name))"
                }
            }
        }
        return nil
    }

    // MARK: Exec writers

    /// pre-restore (a veto stops it: nothing is written) → every file of the components restored into
    /// a hidden directory beside its destination → if the writer is still there, each renamed into
    /// place → post-restore with the result. The writer program comes from `--exec-writer` or the
    /// writers directory, matched by class id (and instance).
    ///
    /// A writer found dead after the files are staged has given up whatever it prepared (a stopped
    /// application, say), so nothing is replaced. From the first rename until post-restore succeeds,
    /// a marker beside the files (`incompleteMarker`) names the restore and its files: an agent killed
    /// among the renames, or a writer that dies before post-restore, leaves it — a mix of old and new
    /// files, or new files the application was not told of, is marked, never silent.
    private func restoreThroughExecWriter(
        _ entry: BackupComponentsDocument.WriterEntry, _ components: [BackupComponentsDocument.ComponentEntry]
    ) throws -> [String] {
        let candidates = try discovery.writers().compactMap { $0 as? ExecWriter }
        var chosen: ExecWriter?
        let context = WriterContext(setID: "restore-\(snapshotID.prefix(8))", deadline: .now + .seconds(60))
        for w in candidates {
            if let m = try? w.identify(context), m.classID == entry.classID, m.instanceName == entry.instanceName || chosen == nil {
                chosen = w
                if m.instanceName == entry.instanceName { break }
            } else {
                w.shutdown()
            }
        }
        guard let writer = chosen else {
            throw RestoreError.componentUnsupported(
                "\(entry.name) (\(entry.instanceName)) restores through its writer: name its program with --exec-writer (no writer given has class id \(entry.classID))"
            )
        }
        defer { writer.shutdown() }
        var events = WriterContext(setID: context.setID, deadline: .now + .seconds(60))
        events.selectedComponents = components.map(Self.fullPath)
        events.restoreTarget = target
        do {
            _ = try writer.handle(.preRestore, events)
        } catch {
            throw RestoreError.componentUnsupported("\(entry.name) vetoed the restore at pre-restore: \(error); nothing was written")
        }
        var failure: Error?
        var staged = StagedFiles()
        defer { staged.discard() }
        do {
            try stage(components.flatMap(\.files), into: &staged)
            guard writer.isAlive else {
                throw RestoreError.componentUnsupported("\(entry.name) exited after pre-restore, before the files were put in place: nothing was replaced")
            }
            try staged.moveIntoPlace(
                marking: "restore of \(events.selectedComponents.joined(separator: ", ")) from snapshot \(snapshotID.prefix(8)) through \(entry.name)")
        } catch {
            failure = error
        }
        if let failure, !staged.moved { throw failure }
        events.deadline = .now + .seconds(60)
        events.results = Dictionary(uniqueKeysWithValues: events.selectedComponents.map { ($0, failure == nil) })
        let post = Result { try writer.handle(.postRestore, events) }
        if let failure { throw failure }
        if case .failure(let e) = post {
            throw RestoreError.componentUnsupported(
                "the \(staged.count) file(s) are restored, but \(entry.name) failed post-restore: \(e) — check the application before using them (\(Self.incompleteMarker) beside them says so until a restore completes)"
            )
        }
        staged.clearMarkers()
        return [
            "restored \(staged.count) file(s) of \(events.selectedComponents.joined(separator: ", ")) through \(entry.name)\(target.map { " to \($0)" } ?? " in place")"
        ]
    }

    /// The name of the marker a component restore leaves beside files it was replacing when it was
    /// interrupted; it lists the files and the snapshot.
    public static let incompleteMarker = ".shadowmover-restore-INCOMPLETE"

    /// Files restored into hidden directories beside their destinations, waiting to be renamed over them.
    struct StagedFiles {
        private(set) var files: [(staged: String, destination: String)] = []
        private var stagingDirectories: [String] = []
        /// True once a rename into place was attempted.
        private(set) var moved = false
        var count: Int { files.count }

        /// A new hidden directory beside `destination` (whose directory is made if missing).
        mutating func directory(beside destination: String) throws -> String {
            let parent = (destination as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            let staging = parent + "/.shadowmover-restore-\(UUID().uuidString.prefix(8).lowercased())"
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false)
            stagingDirectories.append(staging)
            return staging
        }

        mutating func add(_ staged: String, for destination: String) { files.append((staged, destination)) }

        /// The directories the staged files go into.
        private var destinationDirectories: [String] {
            Array(Set(files.map { ($0.destination as NSString).deletingLastPathComponent })).sorted()
        }

        /// Renames every staged file over its destination, after a marker naming `what` and the files
        /// was put in each destination directory (`clearMarkers` removes it once the restore is whole).
        mutating func moveIntoPlace(marking what: String) throws {
            moved = true
            let text =
                "This \(what) did not complete: the files below may be partly replaced, or replaced without the writer's post-restore. Run the restore again.\n"
                + files.map(\.destination).joined(separator: "\n") + "\n"
            for d in destinationDirectories {
                try DurableFile.write(Array(text.utf8), to: d + "/" + ComponentRestore.incompleteMarker)
            }
            for f in files {
                CrashPoint.step()
                guard rename(f.staged, f.destination) == 0 else {
                    throw StoreError.io(path: f.destination, operation: "rename into place", errno: errno)
                }
            }
            for d in destinationDirectories { try? DurableFile.fsyncDirectory(d) }
        }

        /// Removes the markers `moveIntoPlace` left.
        func clearMarkers() {
            for d in destinationDirectories {
                unlink(d + "/" + ComponentRestore.incompleteMarker)
                try? DurableFile.fsyncDirectory(d)
            }
        }

        /// Removes the staging directories (and whatever is left in them).
        mutating func discard() {
            for d in stagingDirectories { try? FileManager.default.removeItem(atPath: d) }
            stagingDirectories = []
        }
    }

    /// Restores `files` (original paths) into staging directories beside their destinations — `target`
    /// + path, or in place. Paths the snapshot lacks, and the component's directories (their files are
    /// in the list on their own), are skipped.
    private func stage(_ files: [String], into staged: inout StagedFiles) throws {
        for file in files {
            let destination = (target.map { $0 == "/" ? "" : $0 } ?? "") + file
            let staging = try staged.directory(beside: destination)
            var options = RestoreOptions(target: staging)
            options.subPath = file
            do {
                _ = try Restorer(store: store, options: options).run(snapshot: record)
            } catch RestoreError.pathNotInSnapshot {
                continue
            }
            let path = staging + "/" + (file as NSString).lastPathComponent
            var st = stat()
            if lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR { continue }
            staged.add(path, for: destination)
        }
    }

    // MARK: PostgreSQL

    private func restorePostgres(_ writer: BackupComponentsDocument.WriterEntry, _ components: [BackupComponentsDocument.ComponentEntry]) throws -> [String] {
        guard let target else {
            throw RestoreError.componentUnsupported(
                "a PostgreSQL data directory is restored to an alternate location: pass --target DIR (then start the cluster there, on a free port)")
        }
        let data = writer.instanceName
        let restored = (target as NSString).appendingPathComponent((data as NSString).lastPathComponent)
        if let pid = try? String(contentsOfFile: restored + "/postmaster.pid", encoding: .utf8).split(separator: "\n").first.flatMap({ Int32($0) }),
            kill(pid, 0) == 0
        {
            throw RestoreError.componentUnsupported("\(restored) is the data directory of a running cluster (postmaster pid \(pid)): choose another --target")
        }
        var options = RestoreOptions(target: target)
        options.subPath = data
        let summary = try Restorer(store: store, options: options).run(snapshot: record)
        guard summary.damage.isEmpty else {
            throw RestoreError.componentUnsupported(
                "the data directory could not be restored whole: \(summary.damage.map(\.description).joined(separator: "; "))")
        }
        var notes = ["restored PostgreSQL data directory \(data) to \(restored) (\(summary.files) files)"]
        notes += try WriterRestore.apply(record: record, target: target, subPath: data)
        let others = components.filter { $0.name != "data" }.map(Self.fullPath)
        if !others.isEmpty { notes.append("restore \(others.joined(separator: ", ")) with --path: the tablespace_map names where the cluster expects them") }
        if start { notes.append(try PostgresStart(data: restored, port: port).run()) }
        return notes
    }
}
