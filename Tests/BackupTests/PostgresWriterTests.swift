import Foundation
import Testing

/// A throw-away PostgreSQL cluster (tools/postgres-cluster.sh), stopped when released.
final class PostgresCluster {
    let data: String
    let port: Int
    let connection: String
    static var bin: String? {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).sorted().last.map { "/usr/lib/postgresql/\($0)/bin" }
    }

    init(data: String, port: Int) throws {
        self.data = data
        self.port = port
        // Through system(3), output to a file: the script starts a server, and Foundation's Process
        // waits for the end of pipes a daemon may hold.
        let out = data + ".connection"
        mkdirs((data as NSString).deletingLastPathComponent)
        guard system("'\(Shell.tool("postgres-cluster.sh"))' start '\(data)' \(port) > '\(out)' 2>&1 < /dev/null") == 0 else {
            throw ShellError("cannot start PostgreSQL in \(data): \((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")")
        }
        connection = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { system("'\(Shell.tool("postgres-cluster.sh"))' stop '\(data)' > /dev/null 2>&1 < /dev/null") }

    /// The first value of `sql`'s first row.
    func query(_ sql: String) throws -> String {
        let r = try Shell.run(["psql", connection, "-XAtqc", sql])
        guard r.code == 0 else { throw ShellError("psql: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A program of the cluster's (pgbench, pg_amcheck) with its connection options.
    func tool(_ name: String, _ arguments: [String]) -> [String] {
        let parts = Dictionary(
            uniqueKeysWithValues: connection.split(separator: " ").map { p -> (String, String) in
                let kv = p.split(separator: "=", maxSplits: 1).map(String.init)
                return (kv[0], kv[1])
            })
        return [PostgresCluster.bin! + "/" + name, "-h", parts["host"]!, "-p", parts["port"]!, "-U", "postgres"] + arguments
    }
}

/// Whether PostgreSQL 15 is installed here.
var postgresInstalled: Bool { PostgresCluster.bin != nil && FileManager.default.isExecutableFile(atPath: "/usr/bin/psql") }

extension Trait where Self == ConditionTrait {
    /// A test on a real PostgreSQL cluster: reported as skipped without root or PostgreSQL — except in
    /// CI's strict mode, where it runs and `requirePostgres` fails it.
    static var needsPostgres: Self {
        .enabled(
            if: (isRoot && postgresInstalled) || privilegedTestsRequired, "needs root and PostgreSQL 15 (apt-get install postgresql-15 postgresql-contrib)")
    }
}

func requirePostgres(_ what: String) throws -> Bool {
    guard try requireRoot(what) else { return false }
    if !postgresInstalled {
        if privilegedTestsRequired {
            Issue.record("\(what) needs PostgreSQL (apt-get install postgresql-15 postgresql-contrib)")
        } else {
            print("skipping \(what): PostgreSQL is not installed (apt-get install postgresql-15 postgresql-contrib)")
        }
        return false
    }
    return true
}

@Suite("PostgreSQL writer on real clusters", .serialized, .needsPostgres)
struct PostgresWriterTests {
    @Test(
        "a cluster under pgbench backs up through pg_backup_start/stop; restored, it recovers, pg_amcheck is clean, pgbench's invariant holds and a row committed before the backup is there",
        arguments: ["btrfs", "xfs"])
    func pgbenchBackupAndRestore(fs: String) throws {
        guard try requirePostgres("the PostgreSQL writer test on \(fs)") else { return }
        let s = Scratch("pg-\(fs)")
        let volume = try LoopVolume(fs, in: s, sizeMB: 700)
        let port = fs == "btrfs" ? 5461 : 5471
        let cluster = try PostgresCluster(data: volume.sub("pg/data"), port: port)
        #expect(try Shell.run(cluster.tool("pgbench", ["-i", "-s", "2", "-q", "postgres"])).code == 0)
        let load = try Child(cluster.tool("pgbench", ["-c", "2", "-j", "1", "-T", "120", "-n", "postgres"]))
        defer {
            load.terminate()
            load.waitUntilExit()
        }
        usleep(500_000)
        _ = try cluster.query("CREATE TABLE IF NOT EXISTS marker(note text)")
        _ = try cluster.query("INSERT INTO marker VALUES ('acknowledged before the backup')")

        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        let r = try CLI.run(
            ["backup", "--store", store, "--json", "--writers-dir", "/nonexistent", "--postgres", cluster.connection, cluster.data],
            environment: coordinatorEnv(s))
        #expect(r.code == 0, "\(r.stderr)")
        load.terminate()
        load.waitUntilExit()
        // The writer's session is gone: nothing left in backup mode.
        #expect(try cluster.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shadowmover'") == "0")

        struct Out: Decodable {
            struct Session: Decodable {
                struct Doc: Decodable {
                    struct W: Decodable { struct C: Decodable { var name: String; var freezeInfo: [String: String]? }; var components: [C] }
                    var writers: [W]
                }
                var components: Doc
                struct Props: Decodable { var provider: String }
                var shadowCopies: [Props]
            }
            var snapshot: String
            var shadowCopy: Session?
        }
        let out = try JSONDecoder().decode(Out.self, from: Data((r.stdout.split(separator: "\n").last ?? "").utf8))
        let info = try #require(out.shadowCopy?.components.writers.first?.components.first { $0.name == "data" }?.freezeInfo)
        #expect(info["backup_label"]?.contains("START WAL LOCATION") == true)
        #expect(out.shadowCopy?.shadowCopies.map(\.provider) == [fs == "btrfs" ? "btrfs" : "reflink"])
        #expect(info["atomic_snapshot"] == (fs == "btrfs" ? "true" : nil), "\(info)")

        let target = s.sub("restore")
        let restored = try CLI.run(["restore", "--store", store, out.snapshot, "-t", target])
        #expect(restored.code == 0, "\(restored.stderr)")
        #expect(restored.stderr.contains("backup_label written"))
        let copy = try PostgresCluster(data: target + cluster.data, port: port + 1)
        let amcheck = try Shell.run(copy.tool("pg_amcheck", ["--all", "--install-missing"]))
        #expect(amcheck.code == 0, "\(amcheck.stdout) \(amcheck.stderr)")
        #expect(try copy.query("SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)") == "t")
        #expect(try copy.query("SELECT count(*) FROM marker") == "1")
        #expect(Int(try copy.query("SELECT count(*) FROM pgbench_history")) ?? 0 > 0, "pgbench ran during the backup")

        // The component alone, the way the writer says: to an alternate location, with its label.
        let noTarget = try CLI.run(["restore", "--store", store, out.snapshot, "--component", "postgres"])
        #expect(noTarget.code == 1 && noTarget.stderr.contains("--target"), "\(noTarget.stderr)")
        let alternate = s.sub("component")
        let component = try CLI.run(["restore", "--store", store, out.snapshot, "--component", "postgres/data", "--target", alternate])
        #expect(component.code == 0, "\(component.stderr)")
        #expect(
            FileManager.default.fileExists(atPath: alternate + "/data/backup_label") && FileManager.default.fileExists(atPath: alternate + "/data/PG_VERSION"))
        #expect(!FileManager.default.fileExists(atPath: alternate + "/data/postmaster.pid"))

        // And started there: recovery runs to the backup's end, the cluster answers on its own port.
        let startedAt = s.sub("started")
        let started = try CLI.run([
            "restore", "--store", store, out.snapshot, "--component", "postgres", "--target", startedAt, "--start", "--port", "\(port + 2)",
        ])
        #expect(started.code == 0, "\(started.stderr)")
        #expect(started.stdout.contains("host=/tmp port=\(port + 2)"), "\(started.stdout)")
        defer { system("'\(Shell.tool("postgres-cluster.sh"))' stop '\(startedAt)/data' > /dev/null 2>&1 < /dev/null") }
        let psql = try Shell.run(["psql", "host=/tmp port=\(port + 2) user=postgres dbname=postgres", "-XAtqc", "SELECT count(*) FROM marker"])
        #expect(psql.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "\(psql.stderr)")
        let again = try CLI.run(["restore", "--store", store, out.snapshot, "--component", "postgres", "--target", startedAt, "--start"])
        #expect(again.code == 1 && again.stderr.contains("running cluster"), "\(again.stderr)")
    }

    @Test("a backup killed (SIGKILL) while PostgreSQL is in backup mode leaves nothing in backup mode, and the next backup succeeds")
    func killedDuringBackup() throws {
        guard try requirePostgres("the PostgreSQL kill test") else { return }
        let s = Scratch("pg-kill")
        let volume = try LoopVolume("btrfs", in: s, sizeMB: 400)
        let cluster = try PostgresCluster(data: volume.sub("pg/data"), port: 5465)
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        // A second writer that hangs at freeze holds the session between pg_backup_start and
        // pg_backup_stop; the agent is killed there.
        let log = s.sub("hang.log")
        let backup = try startCLI(
            [
                "backup", "--store", store, "--writers-dir", "/nonexistent", "--postgres", cluster.connection,
                "--exec-writer", "\(Shell.faultWriter) \(log) --hang freeze", cluster.data,
            ],
            environment: coordinatorEnv(s))
        for _ in 0..<300 where !lines(log).contains("freeze") { usleep(20_000) }
        #expect(lines(log).contains("freeze"))
        #expect(try cluster.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shadowmover'") == "1")
        kill(backup.processIdentifier, SIGKILL)
        backup.waitUntilExit()
        _ = try? Shell.run(["pkill", "-KILL", "-f", log])  // the hung writer got EOF, but sleeps on
        var left = "?"
        for _ in 0..<100 {
            left = try cluster.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shadowmover'")
            if left == "0" { break }
            usleep(50_000)
        }
        #expect(left == "0", "a session is still in backup mode")
        let again = try CLI.run(
            ["backup", "--store", store, "--writers-dir", "/nonexistent", "--postgres", cluster.connection, cluster.data], environment: coordinatorEnv(s))
        #expect(again.code == 0, "\(again.stderr)")
    }

    @Test(
        "a role without the rights to read data_directory or to run pg_backup_start is refused with the GRANT it needs, leaving nothing in backup mode; a table in a tablespace restores, with the tablespace under the target"
    )
    func permissionsAndTablespaces() throws {
        guard try requirePostgres("the PostgreSQL permission and tablespace test") else { return }
        let s = Scratch("pg-rights")
        let volume = try LoopVolume("btrfs", in: s, sizeMB: 700)
        let cluster = try PostgresCluster(data: volume.sub("pg/data"), port: 5466)
        let space = volume.sub("pg/space")
        mkdirs(space)
        #expect(try Shell.run(["chown", "postgres:", space]).code == 0)
        _ = try cluster.query("CREATE TABLESPACE elsewhere LOCATION '\(space)'")
        _ = try cluster.query("CREATE TABLE far(v int) TABLESPACE elsewhere")
        _ = try cluster.query("INSERT INTO far SELECT generate_series(1, 1000)")
        _ = try cluster.query("CREATE ROLE plain LOGIN")
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        let before = storeListing(store)
        let asPlain = cluster.connection.replacingOccurrences(of: "user=postgres", with: "user=plain")
        func backup(_ connection: String) throws -> CLI.Result {
            try CLI.run(
                ["backup", "--store", store, "--json", "--writers-dir", "/nonexistent", "--postgres", connection, cluster.data], environment: coordinatorEnv(s))
        }
        let unreadable = try backup(asPlain)
        #expect(unreadable.code == 1 && unreadable.stderr.contains("GRANT pg_read_all_settings TO plain"), "\(unreadable.stderr)")
        _ = try cluster.query("GRANT pg_read_all_settings TO plain")
        let refused = try backup(asPlain)
        #expect(refused.code == 1 && refused.stderr.contains("pg_backup_start") && refused.stderr.contains("GRANT EXECUTE ON FUNCTION"), "\(refused.stderr)")
        #expect(try cluster.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shadowmover'") == "0")
        #expect(storeListing(store) == before, "a refused backup writes nothing")

        let r = try backup(cluster.connection)
        #expect(r.code == 0, "\(r.stderr)")
        #expect(try CLI.run(["inspect", "snapshot", "latest", "--store", store]).stdout.contains("tablespace/elsewhere"))
        let target = s.sub("restore")
        let restored = try CLI.run(["restore", "--store", store, "latest", "-t", target])
        #expect(restored.code == 0, "\(restored.stderr)")
        #expect(FileManager.default.fileExists(atPath: target + cluster.data + "/tablespace_map"))
        _ = try cluster.query("DROP TABLE far")  // the original's tablespace emptied: the copy must not need it
        let copy = try PostgresCluster(data: target + cluster.data, port: 5467)
        #expect(try copy.query("SELECT count(*) FROM far") == "1000")
        #expect(try copy.query("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'elsewhere'") == target + space)
    }

    @Test("a wrong connection string or a stopped server is a clear error that changes nothing")
    func badConnection() throws {
        guard try requirePostgres("the PostgreSQL bad-input test") else { return }
        let s = Scratch("pg-bad")
        let volume = try LoopVolume("btrfs", in: s, sizeMB: 320)
        mkdirs(volume.sub("data"))
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        let before = storeListing(store)
        let r = try CLI.run(
            [
                "backup", "--store", store, "--writers-dir", "/nonexistent", "--postgres", "host=\(s.sub("nowhere")) port=5999 user=postgres dbname=postgres",
                volume.sub("data"),
            ],
            environment: coordinatorEnv(s))
        #expect(r.code == 1)
        #expect(r.stderr.contains("cannot connect to PostgreSQL") && r.stderr.contains("--postgres"), "\(r.stderr)")
        #expect(storeListing(store) == before)
    }

    @Test("without libpq, --postgres is a clear error naming the package that changes nothing, and the other commands run")
    func withoutLibPQ() throws {
        guard try requireRoot("the missing-libpq test") else { return }
        let s = Scratch("pg-nolib")
        let volume = try LoopVolume("btrfs", in: s, sizeMB: 320)
        mkdirs(volume.sub("data"))
        FileManager.default.createFile(atPath: volume.sub("data/file"), contents: Data("kept".utf8))
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        let before = storeListing(store)
        // The binary runs in a mount namespace of its own where libpq.so.5 is an empty file.
        FileManager.default.createFile(atPath: s.sub("empty"), contents: nil)
        let withoutLibPQ = [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            #"lib=$(readlink -f "$(ldconfig -p | sed -n 's/.*libpq\.so\.5 .*=> //p' | head -n 1)") && "#
                + #"mount --bind "\#(s.sub("empty"))" "$lib" && exec "$0" "$@""#,
        ]
        let r = try CLI.run(
            ["backup", "--store", store, "--writers-dir", "/nonexistent", "--postgres", "host=/nowhere port=5999", volume.sub("data")],
            prefix: withoutLibPQ, environment: coordinatorEnv(s))
        #expect(r.code == 1)
        #expect(r.stderr.contains("cannot load PostgreSQL's client library") && r.stderr.contains("apt-get install libpq5"), "\(r.stderr)")
        #expect(storeListing(store) == before)
        // Linked, the binary would not even start there.
        let plain = try CLI.run(
            ["backup", "--store", store, "--no-shadow-copy", volume.sub("data")], prefix: withoutLibPQ, environment: coordinatorEnv(s))
        #expect(plain.code == 0, "\(plain.stderr)")
        #expect(storeListing(store) != before)
    }
}
