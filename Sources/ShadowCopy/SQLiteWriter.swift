import CSQLite
import Foundation

/// The built-in SQLite writer. At prepare-snapshot it checkpoints the WAL (`PRAGMA
/// wal_checkpoint(TRUNCATE)`), so the snapshot's main file is nearly complete; at freeze it takes the
/// write lock with `BEGIN IMMEDIATE` on its own connection — other writers wait, readers go on — and at
/// thaw it ends that transaction. A killed agent's connection dies with it, and the lock with it.
public final class SQLiteWriter: Writer, @unchecked Sendable {  // one event at a time
    public let database: String
    /// A query run while frozen whose first value is recorded in the component's `freezeInfo["probe"]`
    /// (for example `SELECT count(*) FROM events`), so a restore can be checked against the moment of freeze.
    public let probe: String?
    public var label: String { "sqlite:\(database)" }
    private var connection: OpaquePointer?
    private var inTransaction = false

    public static let classID = "5b1f3c7e-8a2d-4e61-9f0a-3d2c1b0a9e77"

    public init(database: String, probe: String? = nil) {
        self.database = database
        self.probe = probe
    }

    deinit { shutdown() }

    public func identify(_ context: WriterContext) throws -> WriterMetadata {
        let url = URL(fileURLWithPath: database).standardizedFileURL
        let directory = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw WriterError(.nonRetryable, "SQLite database \(database) does not exist")
        }
        let files = ["", "-wal", "-shm", "-journal"].map { FileDescriptor(path: directory, filespec: name + $0) }
        return WriterMetadata(
            name: "SQLite Writer", classID: Self.classID, instanceName: url.path, usageType: .userData,
            sourceType: .transactedDB, restoreMethod: .restoreIfCanReplace,
            components: [Component(logicalPath: "sqlite", name: String(url.path.dropFirst()), type: .database, files: files)])
    }

    public func handle(_ event: WriterEvent, _ context: WriterContext) throws -> [String: String] {
        switch event {
        case .prepareSnapshot:
            try open()
            setBusyTimeout(context.deadline)
            try execute("PRAGMA wal_checkpoint(TRUNCATE)")
        case .freeze:
            try open()
            setBusyTimeout(context.deadline)
            let rc = sqlite3_exec(connection, "BEGIN IMMEDIATE", nil, nil, nil)
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

    private func setBusyTimeout(_ deadline: ContinuousClock.Instant) {
        let remaining = deadline - .now
        let ms = max(1, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000)
        sqlite3_busy_timeout(connection, Int32(min(ms, Int64(Int32.max))))
    }

    private func execute(_ sql: String) throws {
        let rc = sqlite3_exec(connection, sql, nil, nil, nil)
        if rc == SQLITE_BUSY { throw WriterError(.retryable, "\(label): \(sql) found the database busy") }
        guard rc == SQLITE_OK else { throw WriterError(.nonRetryable, "\(label): \(sql) failed: \(errorMessage)") }
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
