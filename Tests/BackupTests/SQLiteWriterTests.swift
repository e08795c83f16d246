import Foundation
import Testing

/// The way cron jobs, CGI/PHP apps and CLI tools use SQLite: loops of short-lived `sqlite3` processes,
/// each one transaction that inserts a row into `t` and counts it in `total` — so the database always
/// holds `count(t) == total.n`, and its -wal, -shm and -journal files come and go with the processes.
/// With `holdConnection`, a long-lived process also keeps a connection open (then a WAL file stays).
final class ShortLivedLoad {
    let database: String
    let stopFile: String
    private var loops: [Child] = []

    init(database: String, journalMode: String, loops count: Int = 3, holdConnection: Bool) throws {
        self.database = database
        stopFile = database + ".stop-load"
        unlink(stopFile)
        let setup =
            "PRAGMA journal_mode=\(journalMode); CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v INTEGER); CREATE TABLE IF NOT EXISTS total(n INTEGER); INSERT INTO total SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM total);"
        let r = try Shell.run(["sqlite3", database, setup])
        guard r.code == 0 else { throw ShellError("sqlite3 setup: \(r.stderr)") }
        // journal_mode WAL is kept in the file; the others are per connection, so each process sets it.
        let perProcess = journalMode == "WAL" ? "" : "PRAGMA journal_mode=\(journalMode);"
        let transaction = "PRAGMA busy_timeout=10000; \(perProcess) BEGIN IMMEDIATE; INSERT INTO t(v) VALUES (1); UPDATE total SET n = n + 1; COMMIT;"
        // 10 ms between processes (bash's own `read -t` on a pipe nobody writes: no process to start).
        // Measured on ext4: a loop then commits ~50 transactions a second on 20% of a core, where one
        // that never pauses commits ~95 on 41% — and nine of those (three freeze-point tests at once)
        // starved the rest of the suite on two cores. Three loops still commit one every ~7 ms.
        for _ in 0..<count {
            loops.append(
                try Self.start(
                    "exec 3<> <(:); while [ ! -e '\(stopFile)' ]; do sqlite3 '\(database)' '\(transaction)' > /dev/null 2>&1; read -t 0.01 -u 3; done"
                ))
        }
        if holdConnection {
            loops.append(
                try Self.start(
                    """
                    \(Shell.python) -c "
                    import sqlite3, os, time
                    c = sqlite3.connect('\(database)', timeout=30)
                    while not os.path.exists('\(stopFile)'):
                        c.execute('SELECT n FROM total').fetchone()
                        time.sleep(0.01)
                    "
                    """))
        }
        // Wait until rows arrive.
        for _ in 0..<300 {
            if let n = try? Shell.sqlite(database, "SELECT count(*) FROM t"), (Int(n) ?? 0) > 20 { return }
            usleep(20_000)
        }
    }

    private static func start(_ script: String) throws -> Child { try Child(["/bin/bash", "-c", script]) }

    func stop() {
        _ = FileManager.default.createFile(atPath: stopFile, contents: nil)
        for p in loops { p.waitUntilExit() }
        loops = []
        unlink(stopFile)
    }

    deinit { stop() }
}

/// What `backup --json` says about one SQLite backup.
struct SQLiteBackupOutcome {
    var code: Int32
    var stderr: String
    var snapshot: String?
    var probe: String?
    var provider: String?

    init(_ r: CLI.Result) {
        code = r.code
        stderr = r.stderr
        struct Out: Decodable {
            struct Session: Decodable {
                struct Doc: Decodable {
                    struct W: Decodable { struct C: Decodable { var freezeInfo: [String: String]? }; var components: [C] }
                    var writers: [W]
                }
                struct Props: Decodable { var provider: String }
                var components: Doc
                var shadowCopies: [Props]
            }
            var snapshot: String
            var shadowCopy: Session?
        }
        guard let out = try? JSONDecoder().decode(Out.self, from: Data((r.stdout.split(separator: "\n").last ?? "").utf8)) else { return }
        snapshot = out.snapshot
        probe = out.shadowCopy?.components.writers.first?.components.first?.freezeInfo?["probe"]
        provider = out.shadowCopy?.shadowCopies.first?.provider
    }
}

/// Not serialized as a suite: its two long tests (journal modes, freeze point) run beside each other,
/// each on volumes and coordinator directories of its own; the journal modes run one at a time, the
/// three freeze-point providers side by side.
@Suite("SQLite writer under real applications")
struct SQLiteWriterTests {
    /// Backs up `db`'s directory `count` times under `load`, restores each backup, and checks it:
    /// exit 0 with no warning about the database's files, `integrity_check` ok, the load's invariant,
    /// and the row count equal to the probe taken while frozen. - Returns: failures, described.
    func backups(
        _ count: Int, of db: String, provider: String?, expectProvider: String, scratch s: Scratch, label: String
    ) throws -> [String] {
        let store = s.sub("store-\(label)")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        let directory = (db as NSString).deletingLastPathComponent
        var failures: [String] = []
        for i in 0..<count {
            let r = SQLiteBackupOutcome(
                try CLI.run(
                    [
                        "backup", "--store", store, "--json", "--writers-dir", "/nonexistent", "--sqlite", db, "--sqlite-probe", "SELECT count(*) FROM t",
                        directory,
                    ]
                        + (provider.map { ["--provider", $0] } ?? []),
                    environment: coordinatorEnv(s)))
            guard r.code == 0, let snapshot = r.snapshot, let probe = r.probe else {
                failures.append("\(label) #\(i): exit \(r.code): \(r.stderr)")
                continue
            }
            if r.provider != expectProvider { failures.append("\(label) #\(i): provider \(r.provider ?? "none"), not \(expectProvider)") }
            if r.stderr.contains(db) { failures.append("\(label) #\(i): a warning about the database's files: \(r.stderr)") }
            let target = s.sub("restore-\(label)-\(i)")
            let restored = try CLI.run(["restore", "--store", store, snapshot, "-t", target])
            guard restored.code == 0 else {
                failures.append("\(label) #\(i): restore exit \(restored.code): \(restored.stderr)")
                continue
            }
            let copy = target + db
            let integrity = (try? Shell.sqlite(copy, "PRAGMA integrity_check")) ?? "unreadable"
            let rows = (try? Shell.sqlite(copy, "SELECT count(*) FROM t")) ?? "?"
            let total = (try? Shell.sqlite(copy, "SELECT n FROM total")) ?? "?"
            if integrity != "ok" || rows != total || rows != probe {
                failures.append("\(label) #\(i): integrity \(integrity), rows \(rows), total \(total), probe at freeze \(probe)")
            }
            try? FileManager.default.removeItem(atPath: target)
        }
        return failures
    }

    @Test(
        "short-lived sqlite3 processes in every journal mode, with and without a long-lived connection: 10 backups each exit 0, restore intact, hold the invariant and the probe's row count",
        .needsRoot, .serialized, arguments: ["WAL", "DELETE", "TRUNCATE", "PERSIST"], [false, true])
    func journalModes(mode: String, holdConnection: Bool) throws {
        guard try requireRoot("the SQLite journal-mode test (loop volumes)") else { return }
        let s = Scratch("sqlite-\(mode)")
        let volume = try LoopVolume("xfs", in: s, sizeMB: 320)
        mkdirs(volume.sub("app"))
        let db = volume.sub("app/app.db")
        let load = try ShortLivedLoad(database: db, journalMode: mode, holdConnection: holdConnection)
        defer { load.stop() }
        // The copy provider: the one that captures the database's files by name, inside the freeze.
        // 10 each (80 in all) keeps CI's test time under 10 minutes; the freeze-point test below is the
        // one that takes 100 backups per provider.
        let failures = try backups(10, of: db, provider: "copy", expectProvider: "copy", scratch: s, label: "\(mode)\(holdConnection ? "-held" : "")")
        #expect(failures.isEmpty, "\(failures.count) of 10 failed: \(failures.prefix(5).joined(separator: "\n"))")
    }

    @Test(
        "100 backups under three loops of short-lived sqlite3 writers: the restored row count is the probe taken at freeze, every time",
        .needsRoot, arguments: [("btrfs", nil, "btrfs"), ("xfs", nil, "reflink"), ("xfs", "copy", "copy")] as [(String, String?, String)])
    func freezePoint(fs: String, provider: String?, expected: String) throws {
        guard try requireRoot("the SQLite freeze-point test (loop volumes)") else { return }
        let s = Scratch("sqlite-point-\(expected)")
        let volume = try LoopVolume(fs, in: s, sizeMB: 320)
        mkdirs(volume.sub("app"))
        let db = volume.sub("app/app.db")
        let load = try ShortLivedLoad(database: db, journalMode: "WAL", holdConnection: false)
        defer { load.stop() }
        let failures = try backups(100, of: db, provider: provider, expectProvider: expected, scratch: s, label: expected)
        // Issue 16: one backup in 100–300 taken file by file restored a consistent database older than
        // the probe — its -wal, captured at the freeze, was deleted by the last connection after the thaw,
        // and the scanner listed the live directory only. Captured files are now listed with it.
        #expect(failures.isEmpty, "\(failures.count) of 100 failed: \(failures.prefix(5).joined(separator: "\n"))")
    }

    @Test(
        "restore --component puts a SQLite database back safely: checked, checkpointed, the old logs removed, a live database refused; a wrong component names what the snapshot holds",
        .needsRoot)
    func componentRestore() throws {
        guard try requireRoot("the SQLite component-restore test (shadow copy session)") else { return }
        let s = Scratch("sqlite-restore")
        let directory = s.sub("app")
        mkdirs(directory)
        let db = directory + "/app.db"
        #expect(
            try Shell.run([
                "sqlite3", db,
                "PRAGMA journal_mode=WAL; CREATE TABLE t(v); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<100) INSERT INTO t SELECT i FROM n;",
            ]).code == 0)
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        let backup = try CLI.run(["backup", "--store", store, "--writers-dir", "/nonexistent", "--sqlite", db, directory], environment: coordinatorEnv(s))
        #expect(backup.code == 0, "\(backup.stderr)")
        #expect(try CLI.run(["inspect", "snapshot", "latest", "--store", store]).stdout.contains("restore method restoreIfCanReplace"))

        // Later: more rows, some of them only in a -wal left by a killed process.
        #expect(try Shell.run(["sqlite3", db, "INSERT INTO t SELECT v + 100 FROM t LIMIT 50;"]).code == 0)
        let killed = try Child([
            Shell.python, "-c",
            "import sqlite3,os,time; c=sqlite3.connect('\(db)', isolation_level=None); c.execute('PRAGMA wal_autocheckpoint=0'); c.execute('INSERT INTO t VALUES (999)'); open('\(db).ready','w').close(); time.sleep(60)",
        ])
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: db + ".ready") { usleep(20_000) }
        #expect(try Shell.sqlite(db, "SELECT count(*) FROM t") == "151")

        // Open in a process: refused, nothing changed.
        let refused = try CLI.run(["restore", "latest", "--store", store, "--component", "sqlite"])
        #expect(refused.code == 1 && refused.stderr.contains("is open in process"), "\(refused.stderr)")
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: db + "-wal"))

        let restored = try CLI.run(["restore", "latest", "--store", store, "--component", "sqlite"])
        #expect(restored.code == 0, "\(restored.stderr)")
        #expect(try Shell.sqlite(db, "PRAGMA integrity_check") == "ok")
        #expect(try Shell.sqlite(db, "SELECT count(*) FROM t") == "100", "the old -wal was not replayed into the restored database")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).allSatisfy { !$0.hasPrefix(".shadowmover-restore") })

        // To an alternate location, by the database's path.
        let alternate = s.sub("alternate")
        #expect(try CLI.run(["restore", "latest", "--store", store, "--component", db, "--target", alternate]).code == 0)
        #expect(try Shell.sqlite(alternate + "/app.db", "SELECT count(*) FROM t") == "100")

        let wrong = try CLI.run(["restore", "latest", "--store", store, "--component", "postgres"])
        #expect(wrong.code == 1 && wrong.stderr.contains("has no component 'postgres'") && wrong.stderr.contains("SQLite Writer (\(db))"), "\(wrong.stderr)")

        // A "database" that is not one: the writer says so, and nothing is stored.
        let bogus = directory + "/bogus.db"
        write(bogus, Array(String(repeating: "not a database ", count: 100).utf8))
        let before = storeListing(store)
        let notADB = try CLI.run(["backup", "--store", store, "--writers-dir", "/nonexistent", "--sqlite", bogus, directory], environment: coordinatorEnv(s))
        #expect(notADB.code == 1 && notADB.stderr.contains("not a database"), "\(notADB.stderr)")
        #expect(storeListing(store).keys.filter { $0.hasPrefix("snapshots/") } == before.keys.filter { $0.hasPrefix("snapshots/") })
    }
}
