import CSQLite
import ChunkStore
import DataMover
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
///   directory is refused.
public struct ComponentRestore {
    public var store: Store
    public var record: SnapshotRecord
    public var snapshotID: String
    /// `WRITER` or `WRITER/COMPONENT`: a writer by name ("SQLite Writer", "sqlite", "postgres"…) or by
    /// instance (the database path, the data directory); a component by its path or name.
    public var selector: String
    /// Where to restore to instead of the original location (PostgreSQL: required).
    public var target: String?
    public var replaceLive = false
    /// Where exec writers are found for their restore events (`--exec-writer`, `--writers-dir`).
    public var discovery = WriterDiscovery(directory: nil)

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
            "snapshot \(snapshotID.prefix(8)) has no component '\(selector)'; it holds " + (held.isEmpty ? "no writers' components (it was not taken through writers)" : held.joined(separator: "; ")))
    }

    // MARK: SQLite

    private func restoreSQLite(_ writer: BackupComponentsDocument.WriterEntry) throws -> [String] {
        let source = writer.instanceName
        let name = (source as NSString).lastPathComponent
        let destination = target.map { ($0 as NSString).appendingPathComponent(name) } ?? source
        let directory = (destination as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if !replaceLive, let user = Self.processUsing([destination, destination + "-wal", destination + "-journal"]) {
            throw RestoreError.componentUnsupported("the database \(destination) is open in process \(user): stop it first, or pass --replace-live to replace it under it")
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
        FileIOSync.directory(directory)
        keepStaging = false
        return ["restored SQLite database \(destination) from snapshot \(snapshotID.prefix(8)) (integrity_check ok\(movedAside ? "; the previous database's logs were removed" : ""))"]
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

    /// pre-restore (a veto stops it: nothing is written) → the components' files restored beside their
    /// destinations and renamed into place → post-restore with the result. The writer program comes
    /// from `--exec-writer` or the writers directory, matched by class id (and instance).
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
            throw RestoreError.componentUnsupported("\(entry.name) (\(entry.instanceName)) restores through its writer: name its program with --exec-writer (no writer given has class id \(entry.classID))")
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
        var restored = 0
        var failure: Error?
        do {
            restored = try restoreFiles(components.flatMap(\.files))
        } catch {
            failure = error
        }
        events.deadline = .now + .seconds(60)
        events.results = Dictionary(uniqueKeysWithValues: events.selectedComponents.map { ($0, failure == nil) })
        let post = Result { try writer.handle(.postRestore, events) }
        if let failure { throw failure }
        if case .failure(let e) = post {
            throw RestoreError.componentUnsupported("the \(restored) file(s) are restored, but \(entry.name) failed post-restore: \(e) — check the application before using them")
        }
        return ["restored \(restored) file(s) of \(events.selectedComponents.joined(separator: ", ")) through \(entry.name)\(target.map { " to \($0)" } ?? " in place")"]
    }

    /// Restores `files` (original paths) to their destinations — `target` + path, or in place — each
    /// first into a hidden directory beside it, then renamed over the destination: a destination is
    /// replaced whole or not at all. - Returns: the number restored (paths the snapshot lacks are skipped).
    private func restoreFiles(_ files: [String]) throws -> Int {
        var count = 0
        for file in files {
            let destination = (target.map { $0 == "/" ? "" : $0 } ?? "") + file
            let directory = (destination as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let staging = directory + "/.shadowmover-restore-\(UUID().uuidString.prefix(8).lowercased())"
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false)
            defer { try? FileManager.default.removeItem(atPath: staging) }
            var options = RestoreOptions(target: staging)
            options.subPath = file
            do {
                _ = try Restorer(store: store, options: options).run(snapshot: record)
            } catch RestoreError.pathNotInSnapshot {
                continue
            }
            let staged = staging + "/" + (file as NSString).lastPathComponent
            var st = stat()
            // A directory of the component: its files are in the list on their own, restored one by one.
            if lstat(staged, &st) == 0, st.st_mode & S_IFMT == S_IFDIR { continue }
            guard rename(staged, destination) == 0 else {
                throw StoreError.io(path: destination, operation: "rename into place", errno: errno)
            }
            FileIOSync.directory(directory)
            count += 1
        }
        return count
    }

    // MARK: PostgreSQL

    private func restorePostgres(_ writer: BackupComponentsDocument.WriterEntry, _ components: [BackupComponentsDocument.ComponentEntry]) throws -> [String] {
        guard let target else {
            throw RestoreError.componentUnsupported("a PostgreSQL data directory is restored to an alternate location: pass --target DIR (then start the cluster there, on a free port)")
        }
        let data = writer.instanceName
        let restored = (target as NSString).appendingPathComponent((data as NSString).lastPathComponent)
        if let pid = try? String(contentsOfFile: restored + "/postmaster.pid", encoding: .utf8).split(separator: "\n").first.flatMap({ Int32($0) }), kill(pid, 0) == 0 {
            throw RestoreError.componentUnsupported("\(restored) is the data directory of a running cluster (postmaster pid \(pid)): choose another --target")
        }
        var options = RestoreOptions(target: target)
        options.subPath = data
        let summary = try Restorer(store: store, options: options).run(snapshot: record)
        guard summary.damage.isEmpty else { throw RestoreError.componentUnsupported("the data directory could not be restored whole: \(summary.damage.map(\.description).joined(separator: "; "))") }
        var notes = ["restored PostgreSQL data directory \(data) to \(restored) (\(summary.files) files)"]
        notes += try WriterRestore.apply(record: record, target: target, subPath: data)
        let others = components.filter { $0.name != "data" }.map(Self.fullPath)
        if !others.isEmpty { notes.append("restore \(others.joined(separator: ", ")) with --path: the tablespace_map names where the cluster expects them") }
        return notes
    }
}

/// Durability of a rename: the directory entry is synced.
enum FileIOSync {
    static func directory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}
