import ChildProcess
import DataMover
import Foundation

/// Starts a restored PostgreSQL data directory (`restore --component postgres --start`): `pg_ctl start`
/// as the directory's owner (PostgreSQL refuses to run as root), waiting until it accepts connections —
/// that is, until recovery from the `backup_label` reached the backup's end.
///
/// The restored copy must not act as the cluster it was copied from: it listens on a free port and on
/// a Unix socket in /tmp only (no TCP), and archiving is off, so it never writes into the original's
/// WAL archive.
struct PostgresStart {
    var data: String
    var port: Int?

    /// Where Debian installs PostgreSQL's programs, per major version.
    static let installRoot = "/usr/lib/postgresql"
    /// How long recovery may take before we give up waiting (pg_ctl's -t).
    static let waitSeconds = 600

    /// - Returns: what was done, with the connection string and how to stop it.
    func run() throws -> String {
        let version = (try? String(contentsOfFile: data + "/PG_VERSION", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        let pgCtl = "\(Self.installRoot)/\(version)/bin/pg_ctl"
        guard FileManager.default.isExecutableFile(atPath: pgCtl) else {
            throw RestoreError.componentUnsupported(
                "the restored cluster is PostgreSQL \(version), whose programs are not installed (\(pgCtl)): apt-get install postgresql-\(version), then start it with pg_ctl -D \(data) start"
            )
        }
        var st = stat()
        guard stat(data, &st) == 0 else { throw RestoreError.componentUnsupported("the restored data directory \(data) is missing") }
        guard st.st_uid != 0 else {
            throw RestoreError.componentUnsupported(
                "the restored data directory \(data) belongs to root, and PostgreSQL does not run as root: chown -R it to the cluster's user, then start it with pg_ctl"
            )
        }
        for file in ["postgresql.conf", "pg_hba.conf"] where !FileManager.default.fileExists(atPath: data + "/" + file) {
            throw RestoreError.componentUnsupported(
                "the restored data directory \(data) has no \(file): the cluster keeps its configuration elsewhere (Debian: /etc/postgresql/\(version)/…). Copy postgresql.conf and pg_hba.conf in — never one whose data_directory names the original — then start it with pg_ctl"
            )
        }
        let port = try self.port ?? Self.freePort(from: 5433)
        let log = data + ".log"
        let fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        if fd >= 0 {
            _ = fchown(fd, st.st_uid, st.st_gid)
            close(fd)
        }
        let options = "-p \(port) -k /tmp -c listen_addresses='' -c archive_mode=off"
        let argv = [
            "/usr/bin/setpriv", "--reuid=\(st.st_uid)", "--regid=\(st.st_gid)", "--clear-groups",
            pgCtl, "-D", data, "-l", log, "-w", "-t", "\(Self.waitSeconds)", "-o", options, "start",
        ]
        // Output to /dev/null: the server's goes to its log, and the server pg_ctl leaves running must
        // hold nothing of ours open.
        guard (try? ChildProcess(argv, stdout: .null, stderr: .null).wait()) == 0 else {
            let tail = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").suffix(8).joined(separator: "\n")
            throw RestoreError.componentUnsupported("the restored cluster in \(data) did not start (its log, \(log), ends with):\n\(tail)")
        }
        return
            "started the restored cluster: recovery is done and it accepts connections at \"host=/tmp port=\(port)\" (Unix socket only, archiving off); stop it with: pg_ctl -D \(data) stop"
    }

    /// The first port from `first` that nothing listens on (TCP on loopback, or a socket in /tmp).
    static func freePort(from first: Int) throws -> Int {
        for port in first..<(first + 100) where !FileManager.default.fileExists(atPath: "/tmp/.s.PGSQL.\(port)") {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard s >= 0 else { continue }
            defer { close(s) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = in_addr_t(UInt32(0x7f00_0001).bigEndian)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound == 0 { return port }
        }
        throw RestoreError.componentUnsupported("no free port in \(first)…\(first + 99) for the restored cluster: name one with --port")
    }
}
