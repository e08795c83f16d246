import CSQLite
import Foundation

/// The built-in SQLite writer. At prepare-snapshot it checkpoints the WAL (`PRAGMA
/// wal_checkpoint(TRUNCATE)`), so the snapshot's main file is nearly complete; at freeze it takes the
/// write lock with `BEGIN IMMEDIATE` on its own connection — other writers wait, readers go on — and at
/// thaw it ends that transaction. A killed agent's connection dies with it, and the lock with it.
public final class SQLiteWriter: Writer, @unchecked Sendable {  // one event at a time
    /// The database file.
    public let database: String
    /// A query run while frozen whose first value is recorded in the component's `freezeInfo["probe"]`
    /// (for example `SELECT count(*) FROM events`), so a restore can be checked against the moment of freeze.
    public let probe: String?
    /// "sqlite:PATH".
    public var label: String { "sqlite:\(database)" }
    private var connection: OpaquePointer?
    private var inTransaction = false

    /// The writer's class id.
    public static let classID = "5b1f3c7e-8a2d-4e61-9f0a-3d2c1b0a9e77"

    /// A writer of `database`; `probe` is a query recorded at freeze (e.g. a row count) for verification.
    public init(database: String, probe: String? = nil) {
        self.database = database
        self.probe = probe
    }

    deinit { shutdown() }

    /// One database component: the file and its -wal, -shm and -journal.
    public func identify(_ context: WriterContext) throws -> WriterMetadata {
        let url = URL(fileURLWithPath: database).standardizedFileURL
        let directory = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw WriterError(.nonRetryable, "SQLite database \(database) does not exist")
        }
        // The main file, and the files SQLite makes and removes as connections come and go: matched
        // when the shadow copy is taken, so whichever exist then are captured together.
        let files =
            [FileDescriptor(path: directory, filespec: Self.escaped(name))]
            + ["-wal", "-shm", "-journal"].map { FileDescriptor(path: directory, filespec: Self.escaped(name) + $0, transient: true) }
        return WriterMetadata(
            name: "SQLite Writer", classID: Self.classID, instanceName: url.path, usageType: .userData,
            sourceType: .transactedDB, restoreMethod: .restoreIfCanReplace,
            components: [Component(logicalPath: "sqlite", name: String(url.path.dropFirst()), type: .database, files: files)])
    }

    /// `name` as a filespec that matches only itself (fnmatch's wildcards escaped).
    static func escaped(_ name: String) -> String {
        var out = ""
        for ch in name {
            if "*?[]\\".contains(ch) { out.append("\\") }
            out.append(ch)
        }
        return out
    }

    /// Checkpoints at prepare-snapshot; from freeze to thaw holds the write lock (`BEGIN IMMEDIATE`): other writers wait, readers go on.
    public func handle(_ event: WriterEvent, _ context: WriterContext) throws -> [String: String] {
        switch event {
        case .prepareSnapshot:
            try open()
            checkpoint(until: min(context.deadline, .now + Self.checkpointPatience))
        case .freeze:
            try open()
            let rc = retryWhileBusy(until: context.deadline) { sqlite3_exec(connection, "BEGIN IMMEDIATE", nil, nil, nil) }
            if rc == SQLITE_BUSY || rc == SQLITE_LOCKED {
                throw WriterError(.retryable, "\(label): the database stayed locked by another writer until the freeze deadline")
            }
            guard rc == SQLITE_OK else { throw WriterError(.nonRetryable, "\(label): BEGIN IMMEDIATE failed: \(errorMessage)") }
            inTransaction = true
            if let probe { return ["probe": try firstValue(probe)] }
        case .thaw, .abort:
            endTransaction()
        case .backupComplete:
            shutdown()
        default: break
        }
        return [:]
    }

    /// Closes its connection.
    public func shutdown() {
        endTransaction()
        if let connection { sqlite3_close_v2(connection) }
        connection = nil
    }

    private func endTransaction() {
        if inTransaction, let connection { sqlite3_exec(connection, "ROLLBACK", nil, nil, nil) }
        inTransaction = false
    }

    private var errorMessage: String { connection.map { String(cString: sqlite3_errmsg($0)) } ?? "not open" }

    private func open() throws {
        guard connection == nil else { return }
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(database, &db, SQLITE_OPEN_READWRITE, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "error \(rc)"
            if let db { sqlite3_close_v2(db) }
            throw WriterError(.nonRetryable, "cannot open SQLite database \(database): \(message)")
        }
        connection = db
    }

    /// How long prepare-snapshot tries for a TRUNCATE checkpoint before settling for a PASSIVE one.
    static let checkpointPatience = Duration.seconds(2)
    /// Pause between attempts to get a lock another connection holds.
    static let busyPause: useconds_t = 50

    /// Tries `call` until it stops answering SQLITE_BUSY or the deadline passes. SQLite's own busy
    /// handler sleeps up to 100 ms between tries, so a steady stream of writers starves it; retrying
    /// every 50 µs takes the lock within one of their transactions, which keeps the freeze window short.
    private func retryWhileBusy(until deadline: ContinuousClock.Instant, _ call: () -> Int32) -> Int32 {
        sqlite3_busy_timeout(connection, 0)
        while true {
            let rc = call()
            guard rc == SQLITE_BUSY || rc == SQLITE_LOCKED, ContinuousClock.now < deadline else { return rc }
            usleep(Self.busyPause)
        }
    }

    /// Checkpoints the WAL into the main file. A TRUNCATE checkpoint needs a moment without writers;
    /// under constant load it may not get one, and waiting for it with the checkpoint lock held would
    /// stop the application's own checkpoints and let the WAL grow without bound. So: try TRUNCATE
    /// briefly, then run a PASSIVE one. The snapshot holds the -wal file either way.
    private func checkpoint(until deadline: ContinuousClock.Instant) {
        let rc = retryWhileBusy(until: deadline) {
            sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil)
        }
        if rc != SQLITE_OK {
            sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
        }
    }

    private func firstValue(_ sql: String) throws -> String {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(connection, sql, -1, &statement, nil) == SQLITE_OK else {
            throw WriterError(.nonRetryable, "\(label): probe query failed: \(errorMessage)")
        }
        defer { sqlite3_finalize(statement) }
        guard sqlite3_step(statement) == SQLITE_ROW, let text = sqlite3_column_text(statement, 0) else { return "" }
        return String(cString: text)
    }
}
