import CLibPQ
import Foundation

/// The built-in PostgreSQL writer: PostgreSQL's own protocol for backups from a file-system snapshot
/// (non-exclusive low-level backup), on one connection held for the whole session.
///
/// - identify: the cluster's data directory, its tablespaces and an external WAL directory are the
///   components (`SHOW data_directory`, `pg_tablespace`); what a base backup leaves out is excluded.
/// - prepare-backup: `pg_backup_start(label, fast => true)` — a checkpoint now, so the snapshot can
///   follow at once.
/// - freeze / thaw: nothing to hold: in backup mode, any instant is a valid snapshot point.
/// - post-snapshot: `pg_backup_stop()`; its `backup_label` and `tablespace_map` are recorded with the
///   component (restore writes them into the restored data directory), and the WAL segments from the
///   start to the stop location are read live afterwards, so recovery finds the end-of-backup record.
/// - abort / a killed agent: the connection ends, and with it PostgreSQL's backup mode.
public final class PostgresWriter: Writer, @unchecked Sendable {  // one event at a time
    /// The writer's class id.
    public static let classID = "0f7c2b1e-5d84-4c3a-b6e9-8a1d2c3e4f50"
    /// The libpq connection string.
    public let connection: String
    /// "postgres:DATA DIRECTORY".
    public var label: String { "postgres:\(dataDirectory ?? connection)" }
    private var conn: OpaquePointer?
    private var pq: SMLibPQ!  // set by connect(), before any other call
    private var dataDirectory: String?
    private var inBackup = false
    private var startWALFile: String?
    private var walFiles: [String] = []

    /// - Parameter connection: a libpq connection string ("host=/run/postgresql port=5432 dbname=postgres user=postgres").
    public init(connection: String) { self.connection = connection }

    deinit { shutdown() }

    /// Connects, finds the data directory and its tablespaces: one database component.
    public func identify(_ context: WriterContext) throws -> WriterMetadata {
        try connect()
        let data = try value("SHOW data_directory")
        guard let version = Int(try value("SHOW server_version_num")), version >= 150000 else {
            throw WriterError(.nonRetryable, "\(label): PostgreSQL 15 or newer is needed (pg_backup_start/pg_backup_stop)")
        }
        dataDirectory = data
        var components = [Component(logicalPath: "postgresql", name: "data", type: .database, files: [FileDescriptor(path: data, recursive: true)])]
        for row in try rows("SELECT spcname, pg_tablespace_location(oid) FROM pg_tablespace WHERE pg_tablespace_location(oid) <> ''") {
            components.append(
                Component(logicalPath: "postgresql/tablespace", name: row[0], type: .database, files: [FileDescriptor(path: row[1], recursive: true)]))
        }
        if let wal = Mounts.realPath(data + "/pg_wal"), !wal.hasPrefix((Mounts.realPath(data) ?? data) + "/") {
            components.append(Component(logicalPath: "postgresql", name: "wal", type: .database, files: [FileDescriptor(path: wal, recursive: true)]))
        }
        // What pg_basebackup leaves out: files that describe the running server, and directories whose
        // contents are rebuilt at start.
        var excludes = ["postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map", "pg_internal.init"].map {
            FileDescriptor(path: data, filespec: $0)
        }
        for directory in ["pg_stat_tmp", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_subtrans"] {
            excludes.append(FileDescriptor(path: data + "/" + directory, filespec: "*", recursive: true))
        }
        return WriterMetadata(
            name: "PostgreSQL Writer", classID: Self.classID, instanceName: data, usageType: .userData, sourceType: .transactedDB,
            restoreMethod: .restoreToAlternateLocation, components: components, excludes: excludes)
    }

    /// pg_backup_start at prepare-backup, pg_backup_stop at post-snapshot (its backup_label kept as freeze info); nothing is held at freeze.
    public func handle(_ event: WriterEvent, _ context: WriterContext) throws -> [String: String] {
        switch event {
        case .prepareBackup:
            try connect()
            let start = try value("SELECT pg_walfile_name(pg_backup_start($1, fast => true))", ["shadowmover \(context.setID)"])
            inBackup = true
            startWALFile = start
        case .freeze:
            return ["freeze_lsn": try value("SELECT pg_current_wal_lsn()::text")]
        case .postSnapshot:
            guard inBackup else { return [:] }
            let stop = try rows("SELECT lsn::text, pg_walfile_name(lsn), labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop(wait_for_archive => false)")
            inBackup = false
            guard let row = stop.first, row.count == 4, let data = dataDirectory, let first = startWALFile else {
                throw WriterError(.nonRetryable, "\(label): pg_backup_stop returned no backup label")
            }
            // Segment names sort by position within a timeline: every one from the start to the stop.
            let names = (try? FileManager.default.contentsOfDirectory(atPath: data + "/pg_wal")) ?? []
            walFiles = names.filter { $0.count == 24 && $0 >= first && $0 <= row[1] }.sorted().map { data + "/pg_wal/" + $0 }
            return ["stop_lsn": row[0], "backup_label": row[2], "tablespace_map": row[3], "wal_files": "\(walFiles.count)"]
        case .abort, .backupComplete:
            disconnect()  // ends backup mode, if it is still on
        default: break
        }
        return [:]
    }

    /// The WAL segments from the backup's start to its stop, read from the live cluster after
    /// post-snapshot: the end-of-backup record is written after the shadow copy was taken.
    public var filesAfterSnapshot: [String] { walFiles }

    /// Closes the session (a backup still in progress ends with it).
    public func shutdown() { disconnect() }

    // MARK: libpq

    /// libpq, opened on first use (see CLibPQ.h).
    private static let libpq: Result<SMLibPQ, WriterError> = {
        var reason = [CChar](repeating: 0, count: 512)
        guard let table = sm_libpq(&reason, reason.count) else {
            return .failure(
                WriterError(
                    .nonRetryable,
                    "cannot load PostgreSQL's client library for --postgres (\(reason.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })) — install it: apt-get install libpq5"
                ))
        }
        return .success(table.pointee)
    }()

    private func connect() throws {
        guard conn == nil else { return }
        pq = try Self.libpq.get()
        // The session is named "shadowmover" unless the connection string names it: an administrator
        // sees in pg_stat_activity which session holds a backup.
        let keywords: [UnsafeMutablePointer<CChar>?] = [strdup("dbname"), strdup("fallback_application_name")]
        let values: [UnsafeMutablePointer<CChar>?] = [strdup(connection), strdup("shadowmover")]
        defer { for p in keywords + values { free(p) } }
        let k = keywords.map { UnsafePointer($0) } + [nil], v = values.map { UnsafePointer($0) } + [nil]
        let c = pq.connectdbParams(k, v, 1)  // 1: "dbname" may be a whole connection string
        guard let c, pq.status(c) == CONNECTION_OK else {
            let message = c.map { Self.text(pq.errorMessage($0)).trimmingCharacters(in: .whitespacesAndNewlines) } ?? "out of memory"
            if let c { pq.finish(c) }
            throw WriterError(.nonRetryable, "cannot connect to PostgreSQL (\(connection)): \(message) — check --postgres and that the server runs")
        }
        conn = c
    }

    private func disconnect() {
        if let conn { pq.finish(conn) }
        conn = nil
        inBackup = false
    }

    private static func text(_ cString: UnsafeMutablePointer<CChar>?) -> String { cString.map { String(cString: $0) } ?? "" }

    private func value(_ sql: String, _ parameters: [String] = []) throws -> String {
        guard let v = try rows(sql, parameters).first?.first else { throw WriterError(.nonRetryable, "\(label): \(sql) returned nothing") }
        return v
    }

    /// Runs `sql` with text parameters `$1…` and returns every row's columns as text.
    private func rows(_ sql: String, _ parameters: [String] = []) throws -> [[String]] {
        guard let conn else { throw WriterError(.nonRetryable, "\(label): not connected") }
        let cStrings = parameters.map { strdup($0) }
        defer { for p in cStrings { free(p) } }
        var pointers = cStrings.map { UnsafePointer<CChar>($0) }
        let result = pointers.withUnsafeMutableBufferPointer { buffer in
            pq.execParams(conn, sql, Int32(parameters.count), nil, buffer.baseAddress, nil, nil, 0)
        }
        defer { pq.clear(result) }
        let status = pq.resultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else {
            let message = Self.text(pq.errorMessage(conn)).trimmingCharacters(in: .whitespacesAndNewlines)
            let sqlState = pq.resultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }  // PG_DIAG_SQLSTATE
            if sqlState == "42501" {  // insufficient_privilege
                let role = pq.user(conn).map { String(cString: $0) } ?? "the role"
                throw WriterError(
                    .nonRetryable,
                    """
                    \(label): \(sql.prefix(60)) was refused: \(message) — connect as a superuser, or give \(role) what a \
                    snapshot backup needs: GRANT pg_read_all_settings TO \(role); GRANT EXECUTE ON FUNCTION \
                    pg_backup_start(text, boolean), pg_backup_stop(boolean) TO \(role);
                    """)
            }
            let retryable = message.contains("another backup") || message.contains("recovery is in progress")
            throw WriterError(retryable ? .retryable : .nonRetryable, "\(label): \(sql.prefix(60)) failed: \(message)")
        }
        return (0..<pq.ntuples(result)).map { r in
            (0..<pq.nfields(result)).map { c in Self.text(pq.getvalue(result, r, c)) }
        }
    }
}
