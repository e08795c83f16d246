import ChunkStore
import Foundation
import ShadowCopy

/// What a writer's restore method adds to a plain restore of its files (VSS's PostRestore), for the
/// built-in writers whose method needs more than the files:
///
/// - PostgreSQL: the restored data directory gets the `backup_label` (and `tablespace_map`, its
///   tablespace paths moved under the target) that `pg_backup_stop` returned, so that the cluster,
///   started there, recovers from the backup's checkpoint to its end — without them a copy taken in
///   backup mode would start as if it had crashed, which is only safe for an atomic snapshot.
public enum WriterRestore {
    /// Applies the restore methods of the writers in `record` whose files were restored into `target`
    /// (`subPath`: the one path restored, if not all). - Returns: what was done, for the user.
    public static func apply(record: SnapshotRecord, target: String, subPath: String?) throws -> [String] {
        guard let session = try record.shadowCopy?.decode(SessionReport.self) else { return [] }
        var done: [String] = []
        for writer in session.components.writers where writer.classID == PostgresWriter.classID {
            guard let data = writer.components.first(where: { $0.logicalPath == "postgresql" && $0.name == "data" }), data.selected,
                let info = data.freezeInfo, let label = info["backup_label"], !label.isEmpty
            else { continue }
            let dataDirectory = writer.instanceName
            let restored: String
            if let subPath {
                // `--path P` restores P into target/<last component of P>.
                guard dataDirectory == subPath || dataDirectory.hasPrefix(subPath + "/") else { continue }
                let base = (subPath as NSString).lastPathComponent
                restored = target + "/" + base + dataDirectory.dropFirst(subPath.count)
            } else {
                restored = (target == "/" ? "" : target) + dataDirectory
            }
            guard FileManager.default.fileExists(atPath: restored + "/PG_VERSION") else { continue }
            try write(label, to: restored + "/backup_label", like: restored + "/PG_VERSION")
            if let map = info["tablespace_map"], !map.isEmpty {
                // "<oid> <path>" lines: the tablespaces were restored under the target too.
                let moved =
                    map.split(separator: "\n").map { line -> String in
                        let parts = line.split(separator: " ", maxSplits: 1)
                        guard parts.count == 2, target != "/" else { return String(line) }
                        return "\(parts[0]) \(target)\(parts[1])"
                    }.joined(separator: "\n") + "\n"
                try write(moved, to: restored + "/tablespace_map", like: restored + "/PG_VERSION")
            }
            done.append(
                "PostgreSQL data directory \(restored): backup_label written\(info["tablespace_map"]?.isEmpty == false ? " with tablespace_map" : ""); start the cluster there to recover to the backup's end (\(info["stop_lsn"] ?? "?"))"
            )
        }
        return done
    }

    /// Writes `text` to `path` (mode 0600), owned as `reference` is (the cluster's user).
    private static func write(_ text: String, to path: String, like reference: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.io(path: path, operation: "create", errno: errno) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Foundation.write(fd, $0.baseAddress, $0.count) }) == bytes.count, fsync(fd) == 0 else {
            throw StoreError.io(path: path, operation: "write", errno: errno)
        }
        var st = stat()
        if stat(reference, &st) == 0 { _ = fchown(fd, st.st_uid, st.st_gid) }
    }
}
