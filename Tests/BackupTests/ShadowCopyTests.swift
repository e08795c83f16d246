import ChunkStore
import DataMover
import Foundation
import Jobs
import ShadowCopy
import Testing

/// A loop-mounted btrfs or XFS (reflink=1) volume made by tools/test-volume.sh, removed afterwards.
final class LoopVolume {
    let mountPoint: String
    let fs: String

    init(_ fs: String, in scratch: Scratch, sizeMB: Int = 320, name: String? = nil) throws {
        self.fs = fs
        mountPoint = scratch.sub("vol-\(name ?? fs)")
        let r = try Shell.run([Shell.tool("test-volume.sh"), "create", fs, mountPoint, "\(sizeMB)"])
        guard r.code == 0 else { throw ShellError("cannot create \(fs) volume: \(r.stderr)") }
    }

    deinit { _ = try? Shell.run([Shell.tool("test-volume.sh"), "remove", mountPoint]) }

    func sub(_ name: String) -> String { mountPoint + "/" + name }
}

struct ShellError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

enum Shell {
    static var root: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
    static func tool(_ name: String) -> String { root + "/tools/" + name }
    static var faultWriter: String { root + "/Tests/BackupTests/Fixtures/fault-writer.py" }
    /// Debian's Python (install-deps installs it), called directly: a `python3` found on PATH may be a
    /// version manager's shim, a shell script that starts a dozen processes before Python does.
    static let python = "/usr/bin/python3"

    @discardableResult
    static func run(_ argv: [String], within limit: Duration = Subprocess.limit, sourceLocation: SourceLocation = #_sourceLocation) throws -> CLI.Result {
        try Subprocess.run(argv, within: limit, sourceLocation: sourceLocation)
    }

    /// Runs one statement with the sqlite3 shell (waiting up to 5 s for a lock, as a live database under
    /// load may hold one) and returns its output. One process, not a Python interpreter per query:
    /// the SQLite tests ask ~1,200 questions, and each interpreter (through a version-manager shim
    /// where there is one) cost more CPU than the backup it checked.
    static func sqlite(_ db: String, _ sql: String) throws -> String {
        let r = try run(["sqlite3", "-batch", "-cmd", ".timeout 5000", db, sql])
        guard r.code == 0 else { throw ShellError("sqlite3 failed: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Environment that gives a test its own agent lock and shadow records.
func coordinatorEnv(_ s: Scratch, shared: String? = nil) -> [String: String] {
    let base = shared ?? s.sub("coord")
    return ["SHADOWMOVER_RUN_DIR": base + "/run", "SHADOWMOVER_STATE_DIR": base + "/state"]
}

func lines(_ path: String) -> [String] {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
}

/// Inserts rows into a WAL-mode SQLite database as fast as it can, one transaction each.
final class InsertLoad {
    let process: Child

    init(database: String) throws {
        process = try Child([
            Shell.python, "-c",
            """
            import sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, payload BLOB)")
            while True:
                c.execute("BEGIN")
                c.execute("INSERT INTO events(payload) VALUES (randomblob(100))")
                c.execute("COMMIT")
            """, database,
        ])
        // Wait for the table and some rows.
        for _ in 0..<200 {
            if let n = try? Shell.sqlite(database, "SELECT count(*) FROM events"), (Int(n) ?? 0) > 200 { return }
            usleep(20_000)
        }
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}

@Suite("Shadow copy sessions on real volumes", .serialized)
struct ShadowCopyTests {
    @Test("a live SQLite database under insert load restores consistent, with the row count at freeze", .needsRoot, arguments: ["btrfs", "xfs"])
    func sqliteUnderLoad(fs: String) throws {
        guard try requireRoot("the \(fs) SQLite test (loop volumes)") else { return }
        let s = Scratch("sqlite-\(fs)")
        let volume = try LoopVolume(fs, in: s)
        mkdirs(volume.sub("app"))
        let db = volume.sub("app/app.db")
        let load = try InsertLoad(database: db)
        defer { load.stop() }
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        let r = try CLI.run(
            [
                "backup", "--store", store, "--json", "--writers-dir", "/nonexistent", "--sqlite", db, "--sqlite-probe", "SELECT count(*) FROM events",
                volume.sub("app"),
            ],
            environment: coordinatorEnv(s))
        #expect(r.code == 0, "\(r.stderr)")
        load.stop()
        struct Out: Decodable {
            struct Session: Decodable {
                struct Doc: Decodable {
                    struct W: Decodable { struct C: Decodable { var freezeInfo: [String: String]?; var selected: Bool }; var components: [C] }
                    var writers: [W]
                }
                struct Window: Decodable { var totalMs: Double }
                var components: Doc
                var freezeWindow: Window?
                var shadowCopies: [Props]
                struct Props: Decodable { var provider: String }
            }
            var snapshot: String
            var shadowCopy: Session?
        }
        // JSON lines: progress events, then the summary.
        let out = try JSONDecoder().decode(Out.self, from: Data((r.stdout.split(separator: "\n").last ?? "").utf8))
        let session = try #require(out.shadowCopy)
        #expect(session.shadowCopies.map(\.provider) == [fs == "btrfs" ? "btrfs" : "reflink"])
        #expect((session.freezeWindow?.totalMs ?? 1e9) < 5000)
        let probe = try #require(session.components.writers.first?.components.first?.freezeInfo?["probe"])
        let target = s.sub("restore")
        let restored = try CLI.run(["restore", "--store", store, out.snapshot, "-t", target])
        #expect(restored.code == 0, "\(restored.stderr)")
        let copy = target + db
        #expect(try Shell.sqlite(copy, "PRAGMA integrity_check") == "ok")
        #expect(try Shell.sqlite(copy, "SELECT count(*) FROM events") == probe)
        #expect(Int(probe)! > 200)
        // Nothing left behind on the volume.
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: volume.sub(".shadowmover-shadows"))) ?? []).isEmpty)
    }

    @Test("exec writers and fsfreeze hooks see exactly the VSS event order", .needsRoot)
    func eventOrder() throws {
        guard try requireRoot("the event order test (loop volumes)") else { return }
        let s = Scratch("order")
        let volume = try LoopVolume("btrfs", in: s)
        mkdirs(volume.sub("data"))
        write(volume.sub("data/file"), [1, 2, 3])
        let log = s.sub("writer.log"), hookLog = s.sub("hook.log")
        let hook = s.sub("hook.sh")
        write(hook, Array("#!/bin/sh\necho \"$1\" >> \(hookLog)\n".utf8))
        chmod(hook, 0o755)
        let store = s.sub("store")
        _ = try CLI.run(["init", "--store", store])
        let r = try CLI.run(
            [
                "backup", "--store", store, "--writers-dir", "/nonexistent", "--exec-writer", "\(Shell.faultWriter) \(log)", "--fsfreeze-hook", hook,
                volume.sub("data"),
            ],
            environment: coordinatorEnv(s))
        #expect(r.code == 0, "\(r.stderr)")
        #expect(lines(log) == ["identify", "prepare-backup", "prepare-snapshot", "freeze", "thaw", "post-snapshot", "backup-complete", "eof"])
        #expect(lines(hookLog) == ["freeze", "thaw"])
    }

    @Test("a hook and a writer that leave a service running (started at freeze, still there after they exit) do not hold up the backup", .needsRoot)
    func childrenThatLeaveDaemons() throws {
        guard try requireRoot("the daemon-leaving writers test (loop volumes)") else { return }
        let s = Scratch("daemons")
        let volume = try LoopVolume("btrfs", in: s)
        mkdirs(volume.sub("data"))
        write(volume.sub("data/file"), [1, 2, 3])
        // Each starts a "service" (a sleep with its standard streams closed, as a daemon has) and exits.
        // Foundation's Process never saw such a child end: the service held a descriptor it watched.
        let marker = "31.\(getpid())"
        let hook = s.sub("hook.sh")
        write(hook, Array("#!/bin/sh\n[ \"$1\" = freeze ] && sleep \(marker) </dev/null >/dev/null 2>&1 &\nexit 0\n".utf8))
        chmod(hook, 0o755)
        let writer = s.sub("writer.sh")
        write(
            writer,
            Array(
                """
                #!/bin/sh
                while read -r line; do
                  case "$line" in
                    *identify*) echo '{"ok": true, "metadata": {"name": "daemon", "components": []}}';;
                    *freeze*) sleep \(marker) </dev/null >/dev/null 2>&1 & echo '{"ok": true}';;
                    *) echo '{"ok": true}';;
                  esac
                done

                """.utf8))
        chmod(writer, 0o755)
        defer { _ = try? Shell.run(["pkill", "-f", "sleep \(marker)"]) }
        let store = s.sub("store")
        _ = try CLI.run(["init", "--store", store])
        let r = try CLI.run(
            ["backup", "--store", store, "--writers-dir", "/nonexistent", "--exec-writer", writer, "--fsfreeze-hook", hook, volume.sub("data")],
            environment: coordinatorEnv(s), within: .seconds(60))
        #expect(r.code == 0, "\(r.stderr)")
        // The services sleep 31 s: still running means the backup did not wait for them.
        #expect(try Shell.run(["pgrep", "-f", "sleep \(marker)"]).stdout.split(separator: "\n").count == 2, "both services still run")
    }

    @Test("a writer that hangs at freeze is cut at the freeze limit: the others are aborted and thawed, no shadow copy is left", .needsRoot)
    func hangAtFreeze() throws {
        guard try requireRoot("the freeze timeout test (loop volumes)") else { return }
        let s = Scratch("hang")
        let volume = try LoopVolume("xfs", in: s)
        mkdirs(volume.sub("data"))
        write(volume.sub("data/file"), [1, 2, 3])
        let good = s.sub("good.log"), hung = s.sub("hung.log")
        let store = s.sub("store")
        _ = try CLI.run(["init", "--store", store])
        let before = storeListing(store)
        let r = try CLI.run(
            [
                "backup", "--store", store, "--writers-dir", "/nonexistent", "--freeze-timeout", "2", "--retries", "0",
                "--exec-writer", "\(Shell.faultWriter) \(good)", "--exec-writer", "\(Shell.faultWriter) \(hung) --hang freeze", volume.sub("data"),
            ],
            environment: coordinatorEnv(s))
        #expect(r.code == 1)
        #expect(r.stderr.contains("fault-writer.py"))
        #expect(r.stderr.contains("freeze limit"), "cut by the limit, not by the writer: \(r.stderr)")
        #expect(lines(good).contains("abort"))
        #expect(!lines(good).contains("post-snapshot"))
        #expect(storeListing(store) == before)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: volume.sub(".shadowmover-shadows"))) ?? []).isEmpty)
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: s.sub("coord/state/shadows"))) ?? []).isEmpty)
    }

    @Test("writers that crash, answer garbage or veto fail the backup with their name; retryable vetoes are retried", .needsRoot)
    func misbehavingWriters() throws {
        guard try requireRoot("the writer fault tests (loop volumes)") else { return }
        let s = Scratch("faults")
        let volume = try LoopVolume("btrfs", in: s)
        mkdirs(volume.sub("data"))
        write(volume.sub("data/file"), [1, 2, 3])
        let store = s.sub("store")
        _ = try CLI.run(["init", "--store", store])
        func backup(_ writerArgs: String, _ extra: [String] = []) throws -> CLI.Result {
            try CLI.run(
                [
                    "backup", "--store", store, "--writers-dir", "/nonexistent", "--retry-backoff", "0.05",
                    "--exec-writer", "\(Shell.faultWriter) \(s.sub("w.log")) \(writerArgs)", volume.sub("data"),
                ] + extra,
                environment: coordinatorEnv(s))
        }
        let crash = try backup("--crash prepare-snapshot")
        #expect(crash.code == 1)
        #expect(crash.stderr.contains("exited during prepare-snapshot"))
        let garbage = try backup("--garbage prepare-backup")
        #expect(garbage.code == 1)
        #expect(garbage.stderr.contains("not {\"ok\""))
        let veto = try backup("--veto freeze --failure nonRetryable")
        #expect(veto.code == 1)
        #expect(veto.stderr.contains("vetoed freeze"))
        let retried = try backup("--veto freeze --failure retryable --times 1 --counter \(s.sub("count"))", ["--json"])
        #expect(retried.code == 0, "\(retried.stderr)")
        #expect(retried.stdout.contains("\"attempts\":2"))
        let exhausted = try backup("--veto freeze --failure retryable --times 100 --counter \(s.sub("count2"))", ["--retries", "2"])
        #expect(exhausted.code == 1)
        #expect(exhausted.stderr.contains("after 3 attempts"))
        // A veto from a writer whose components are not selected does not fail the backup.
        let unselected = try CLI.run(
            [
                "backup", "--store", store, "--writers-dir", "/nonexistent", "--select", "chosen",
                "--exec-writer", "\(Shell.faultWriter) \(s.sub("a.log")) --name chosen",
                "--exec-writer", "\(Shell.faultWriter) \(s.sub("b.log")) --name other --veto identify", volume.sub("data"),
            ],
            environment: coordinatorEnv(s))
        #expect(unselected.code == 0, "\(unselected.stderr)")
        #expect(lines(s.sub("b.log")) == ["identify", "eof"])
        #expect(lines(s.sub("a.log")).contains("freeze"))
        // The only snapshots are from the successful runs.
        #expect(try Store(path: store).snapshots().records.count == 2)
    }

    @Test("one agent at a time defines a set; a marked volume refuses a second shadow copy", .needsRoot)
    func twoAgents() throws {
        guard try requireRoot("the two-agent test (loop volumes)") else { return }
        let s = Scratch("agents")
        let a = try LoopVolume("btrfs", in: s)
        mkdirs(a.sub("data"))
        write(a.sub("data/f"), [1])
        let storeA = s.sub("storeA"), storeB = s.sub("storeB")
        _ = try CLI.run(["init", "--store", storeA])
        _ = try CLI.run(["init", "--store", storeB])
        let env = coordinatorEnv(s, shared: s.sub("shared"))
        func start(_ args: [String]) throws -> Child { try startCLI(args, environment: env) }
        // Agent 1 lingers in prepare-snapshot (set being created), then in backup-complete (volume marked).
        let log1 = s.sub("w1.log")
        let first = try start(
            [
                "backup", "--store", storeA, "--writers-dir", "/nonexistent", "--exec-writer", "\(Shell.faultWriter) \(log1) --sleep prepare-snapshot:3",
                a.sub("data"),
            ])
        for _ in 0..<200 where !lines(log1).contains("prepare-snapshot") { usleep(20_000) }
        let busy = try CLI.run(["backup", "--store", storeB, "--writers-dir", "/nonexistent", "--provider", "btrfs", a.sub("data")], environment: env)
        #expect(busy.code == 1)
        #expect(busy.stderr.contains("a shadow copy set is already being created by pid \(first.processIdentifier)"))
        let b = try LoopVolume("btrfs", in: s, name: "b")
        mkdirs(b.sub("data"))
        let waited = try CLI.run(
            ["backup", "--store", storeB, "--writers-dir", "/nonexistent", "--wait", "30", "--provider", "btrfs", b.sub("data")], environment: env)
        #expect(waited.code == 0, "\(waited.stderr)")
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)

        // Agent 1 again, now lingering in backup-complete: the set is made, the volume still marked.
        let log2 = s.sub("w2.log")
        let second = try start(
            [
                "backup", "--store", storeA, "--writers-dir", "/nonexistent", "--exec-writer", "\(Shell.faultWriter) \(log2) --sleep backup-complete:3",
                a.sub("data"),
            ])
        for _ in 0..<300 where !lines(log2).contains("backup-complete") { usleep(20_000) }
        let marked = try CLI.run(["backup", "--store", storeB, "--writers-dir", "/nonexistent", "--provider", "btrfs", a.sub("data")], environment: env)
        #expect(marked.code == 1)
        #expect(marked.stderr.contains("volume \(a.mountPoint) is already being shadowed by pid \(second.processIdentifier)"))
        second.waitUntilExit()
        let after = try CLI.run(["backup", "--store", storeB, "--writers-dir", "/nonexistent", "--provider", "btrfs", a.sub("data")], environment: env)
        #expect(after.code == 0, "\(after.stderr)")
    }

    @Test("an agent killed while writers are frozen: they thaw on EOF, and the next run removes the orphan and succeeds", .needsRoot)
    func killedAgent() throws {
        guard try requireRoot("the killed-agent test (loop volumes)") else { return }
        let s = Scratch("killed")
        let volume = try LoopVolume("xfs", in: s)
        mkdirs(volume.sub("data"))
        write(volume.sub("data/f"), randomBytes(100_000, seed: 9))
        let db = volume.sub("data/app.db")
        _ = try Shell.sqlite(db, "CREATE TABLE t(x)")
        let store = s.sub("store")
        _ = try CLI.run(["init", "--store", store])
        let env = coordinatorEnv(s)
        let frozenLog = s.sub("frozen.log"), hungLog = s.sub("hung.log")
        let p = try startCLI(
            [
                "backup", "--store", store, "--writers-dir", "/nonexistent", "--freeze-timeout", "120", "--sqlite", db,
                "--exec-writer", "\(Shell.faultWriter) \(frozenLog)", "--exec-writer", "\(Shell.faultWriter) \(hungLog) --hang freeze", volume.sub("data"),
            ], environment: env)
        for _ in 0..<300 where !(lines(frozenLog).contains("freeze") && lines(hungLog).contains("freeze")) { usleep(20_000) }
        usleep(200_000)  // let the SQLite writer take its lock too
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        for _ in 0..<100 where !lines(frozenLog).contains("thawed-on-eof") { usleep(20_000) }
        #expect(lines(frozenLog).suffix(2) == ["eof", "thawed-on-eof"])
        // The hung writer got EOF too but is stuck in its sleep; it is not ours to wait for.
        _ = try? Shell.run(["pkill", "-KILL", "-f", hungLog])
        // The SQLite lock died with the agent: writing works at once.
        #expect(try Shell.sqlite(db, "SELECT count(*) FROM t") == "0")
        let insert = try Shell.run([
            Shell.python, "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=1); c.execute('INSERT INTO t VALUES (1)'); c.commit()", db,
        ])
        #expect(insert.code == 0)
        // The orphan is visible, then cleaned up by the next run.
        let list = try CLI.run(["shadows", "list"], environment: env)
        #expect(list.stdout.contains("orphan"))
        let next = try CLI.run(["backup", "--store", store, "--writers-dir", "/nonexistent", "--sqlite", db, volume.sub("data")], environment: env)
        #expect(next.code == 0, "\(next.stderr)")
        #expect(next.stderr.contains("left by agent pid \(p.processIdentifier)"))
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: volume.sub(".shadowmover-shadows"))) ?? []).isEmpty)
    }

    @Test(
        "a component file captured at the freeze and deleted before the backup reads the tree (a -wal its last connection removed after the thaw) is in the snapshot as it was",
        .needsRoot, arguments: ["reflink", "copy"])
    func capturedThenDeleted(provider: String) throws {
        guard try requireRoot("the captured-then-deleted test (loop volumes)") else { return }
        let s = Scratch("captured-\(provider)")
        let volume = try LoopVolume("xfs", in: s)
        let data = volume.sub("data")
        mkdirs(data)
        let log = data + "/app.log"
        write(log, Array("written before the freeze\n".utf8))
        write(data + "/other", [1, 2, 3])
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        let r = try CLI.run(
            [
                "backup", "--store", store, "--writers-dir", "/nonexistent", "--provider", provider,
                "--exec-writer", "\(Shell.faultWriter) \(s.sub("w.log")) --files \(data) --remove thaw:\(log)", data,
            ],
            environment: coordinatorEnv(s))
        #expect(r.code == 0, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: log))
        let target = s.sub("restore")
        #expect(try CLI.run(["restore", "latest", "--store", store, "-t", target]).code == 0)
        #expect(contents(target + data)["app.log"] == Array("written before the freeze\n".utf8), "\(contents(target + data).keys.sorted())")
        #expect(contents(target + data)["other"] == [1, 2, 3])
    }

    @Test("--keep leaves the shadow copy for `shadows list` and `shadows delete`", .needsRoot)
    func keptShadows() throws {
        guard try requireRoot("the kept shadow test (loop volumes)") else { return }
        let s = Scratch("keep")
        let volume = try LoopVolume("btrfs", in: s)
        mkdirs(volume.sub("data"))
        write(volume.sub("data/f"), [1, 2])
        let store = s.sub("store")
        _ = try CLI.run(["init", "--store", store])
        let env = coordinatorEnv(s)
        #expect(try CLI.run(["backup", "--store", store, "--writers-dir", "/nonexistent", "--keep", volume.sub("data")], environment: env).code == 0)
        let list = try CLI.run(["shadows", "list", "--json"], environment: env)
        struct Item: Decodable {
            struct R: Decodable { struct P: Decodable { var snapshotID: String; var snapshotPath: String }; var properties: P; var keep: Bool }; var record: R
        }
        let items = try JSONDecoder().decode([Item].self, from: Data(list.stdout.utf8))
        #expect(items.count == 1 && items[0].record.keep)
        let path = items[0].record.properties.snapshotPath
        #expect(FileManager.default.contents(atPath: path + "/0/data/f") == Data([1, 2]))
        #expect(try CLI.run(["shadows", "delete", String(items[0].record.properties.snapshotID.prefix(8))], environment: env).code == 0)
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try CLI.run(["shadows", "list", "--json"], environment: env).stdout.contains("[\n\n]") || true)
    }

    @Test("unsupported or read-only filesystems and commit overruns get clear errors", .needsRoot)
    func providerErrors() throws {
        guard try requireRoot("the provider error tests (loop volumes)") else { return }
        let s = Scratch("providers")
        let xfs = try LoopVolume("xfs", in: s)
        mkdirs(xfs.sub("data"))
        write(xfs.sub("data/big"), randomBytes(1 << 20, seed: 4))
        let ext4 = try LoopVolume("ext4", in: s)
        mkdirs(ext4.sub("data"))
        write(ext4.sub("data/big"), randomBytes(64 << 20, seed: 4))
        let store = s.sub("store")
        _ = try CLI.run(["init", "--store", store])
        let env = coordinatorEnv(s)
        let notBtrfs = try CLI.run(["backup", "--store", store, "--writers-dir", "/nonexistent", "--provider", "btrfs", xfs.sub("data")], environment: env)
        #expect(notBtrfs.code == 1)
        #expect(notBtrfs.stderr.contains("it is xfs, not btrfs"))
        // The copy provider (ext4: a real copy) reports the volume whose commit overran.
        let slow = try CLI.run(
            [
                "backup", "--store", store, "--writers-dir", "/nonexistent", "--commit-timeout", "0.001",
                "--exec-writer", "\(Shell.faultWriter) \(s.sub("w.log")) --files \(ext4.sub("data"))", ext4.sub("data"),
            ],
            environment: env)
        #expect(slow.code == 1)
        #expect(slow.stderr.contains("the shadow copy of \(ext4.mountPoint) took longer than"))
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: ext4.sub(".shadowmover-shadows"))) ?? []).isEmpty)
        #expect(lines(s.sub("w.log")).contains("abort"))
        // Read-only: a forced provider cannot work there; chosen automatically, the data is read live.
        #expect(mount("none", xfs.mountPoint, nil, UInt(MS_REMOUNT | MS_RDONLY), nil) == 0)
        let forced = try CLI.run(["backup", "--store", store, "--writers-dir", "/nonexistent", "--provider", "reflink", xfs.sub("data")], environment: env)
        #expect(forced.code == 1)
        #expect(forced.stderr.contains("mounted read-only"))
        let auto = try CLI.run(["backup", "--store", store, "--writers-dir", "/nonexistent", xfs.sub("data")], environment: env)
        #expect(auto.code == 0, "\(auto.stderr)")
        #expect(try Store(path: store).snapshots().records.count == 1)
    }
}

@Suite("Shadow copy set rules")
struct ShadowCopySetTests {
    func volume(_ i: Int) -> Volume {
        Volume(device: "7:\(i)", mountPoint: "/mnt/v\(i)", fsType: "xfs", source: "/dev/loop\(i)", root: "/", readOnly: false)
    }

    @Test("a set holds at most 64 volumes, each once")
    func limits() throws {
        var set = ShadowCopySet()
        for i in 0..<64 { try set.add(volume(i)) }
        #expect(throws: ShadowCopyError.self) { try set.add(volume(64)) }
        var other = ShadowCopySet()
        try other.add(volume(1))
        do {
            try other.add(volume(1))
            Issue.record("duplicate accepted")
        } catch {
            #expect("\(error)".contains("already in the shadow copy set"))
        }
    }

    @Test("mountinfo lines parse, escapes included")
    func mountinfo() throws {
        let v = try #require(Mounts.parse("36 35 98:0 /sub /mnt/my\\040disk rw,noatime master:1 - btrfs /dev/loop3 rw,space_cache"))
        #expect(v.mountPoint == "/mnt/my disk")
        #expect(v.fsType == "btrfs")
        #expect(v.device == "98:0")
        #expect(v.root == "/sub")
        #expect(!v.readOnly)
        let mounts = try Mounts.load()
        #expect(try Mounts.volume(for: "/proc/self", in: mounts).fsType == "proc")
    }

    @Test(
        "restore --component through an exec writer: pre-restore, the files replaced whole, post-restore; a veto at pre-restore replaces nothing; a writer that dies after it, or an agent killed among the renames, leaves the old files or the new ones marked incomplete, never a silent mix"
    )
    func execWriterRestore() throws {
        /// What a restore left in `data` and `data/sub` besides the files: staging directories, markers.
        func hidden(_ data: String) -> [String] {
            [data, data + "/sub"].flatMap { d in
                ((try? FileManager.default.contentsOfDirectory(atPath: d)) ?? []).filter { $0.hasPrefix(".shadowmover-restore") }
            }
        }
        guard try requireRoot("the exec-writer restore test (shadow copy session)") else { return }
        let s = Scratch("exec-restore")
        let data = s.sub("data")
        mkdirs(data + "/sub")
        write(data + "/a.log", Array("first version of a\n".utf8))
        write(data + "/sub/b.log", Array("first version of b\n".utf8))
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        let backupLog = s.sub("backup.log")
        let b = try CLI.run(
            ["backup", "--store", store, "--writers-dir", "/nonexistent", "--exec-writer", "\(Shell.faultWriter) \(backupLog) --files \(data)", data],
            environment: coordinatorEnv(s))
        #expect(b.code == 0, "\(b.stderr)")
        write(data + "/a.log", Array("second version of a\n".utf8))
        write(data + "/sub/b.log", Array("second version of b\n".utf8))

        let vetoLog = s.sub("veto.log")
        let vetoed = try CLI.run([
            "restore", "latest", "--store", store, "--component", "fault/data", "--exec-writer",
            "\(Shell.faultWriter) \(vetoLog) --files \(data) --veto pre-restore",
        ])
        #expect(vetoed.code == 1 && vetoed.stderr.contains("vetoed the restore at pre-restore"), "\(vetoed.stderr)")
        #expect(contents(data)["a.log"] == Array("second version of a\n".utf8))
        #expect(!lines(vetoLog).contains("post-restore"))

        // The writer dies after pre-restore. Found dead before the renames, nothing is replaced; dead
        // only by post-restore, the files are replaced and marked as not restored through the writer.
        // Never half of them, never unmarked.
        let markerA = data + "/" + ComponentRestore.incompleteMarker, markerB = data + "/sub/" + ComponentRestore.incompleteMarker
        for (exit, alwaysReplaced) in [("--exit-after pre-restore", false), ("--crash post-restore", true)] {
            let died = try CLI.run([
                "restore", "latest", "--store", store, "--component", "fault", "--exec-writer",
                "\(Shell.faultWriter) \(s.sub("died.log")) --files \(data) \(exit)",
            ])
            #expect(died.code == 1, "\(died.stderr)")
            let now = contents(data)
            let old = now["a.log"] == Array("second version of a\n".utf8) && now["sub/b.log"] == Array("second version of b\n".utf8)
            let new = now["a.log"] == Array("first version of a\n".utf8) && now["sub/b.log"] == Array("first version of b\n".utf8)
            if old && !alwaysReplaced {
                #expect(died.stderr.contains("nothing was replaced"), "\(died.stderr)")
                #expect(hidden(data).isEmpty, "\(hidden(data))")
            } else {
                #expect(new, "\(exit): neither the old files nor the new: \(now)")
                #expect(died.stderr.contains("failed post-restore"), "\(died.stderr)")
                let marker = (try? String(contentsOfFile: markerA, encoding: .utf8)) ?? ""
                #expect(marker.contains("did not complete") && marker.contains(data + "/a.log"), "\(marker)")
                #expect(FileManager.default.fileExists(atPath: markerB))
                write(data + "/a.log", Array("second version of a\n".utf8))
                write(data + "/sub/b.log", Array("second version of b\n".utf8))
            }
        }

        // The agent killed between its renames: the directories it was replacing in say so.
        let crashed = try CLI.run(
            ["restore", "latest", "--store", store, "--component", "fault", "--exec-writer", "\(Shell.faultWriter) \(s.sub("crash.log")) --files \(data)"],
            environment: ["SHADOWMOVER_CRASH_AT": "2"])
        #expect(crashed.code != 0)
        let marker = (try? String(contentsOfFile: markerA, encoding: .utf8)) ?? ""
        #expect(marker.contains("did not complete") && marker.contains(data + "/a.log") && marker.contains(data + "/sub/b.log"), "\(marker)")

        let log = s.sub("restore.log")
        let r = try CLI.run(["restore", "latest", "--store", store, "--component", "fault", "--exec-writer", "\(Shell.faultWriter) \(log) --files \(data)"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(contents(data)["a.log"] == Array("first version of a\n".utf8))
        #expect(contents(data)["sub/b.log"] == Array("first version of b\n".utf8))
        let events = lines(log)
        #expect(events.firstIndex(of: "pre-restore") ?? 99 < events.firstIndex(of: "post-restore") ?? -1, "\(events)")
        #expect(!FileManager.default.fileExists(atPath: markerA) && !FileManager.default.fileExists(atPath: markerB), "a complete restore clears the marks")

        let none = try CLI.run(["restore", "latest", "--store", store, "--component", "fault"])
        #expect(none.code == 1 && none.stderr.contains("--exec-writer"), "\(none.stderr)")
    }
}
