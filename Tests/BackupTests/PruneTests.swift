import ChunkStore
import Foundation
import Testing

/// A store with twelve snapshots of a changing tree (one worker, so the packs are the same every run),
/// the oldest nine forgotten: prune has packs to
/// delete and packs to repack. Keeps what each surviving snapshot must restore to.
struct PruneFixture {
    let scratch = Scratch("prune")
    let storePath: String
    let source: String
    /// Surviving snapshot id → file name → content.
    var expected: [String: [String: [UInt8]]] = [:]

    init() throws {
        source = scratch.sub("source")
        mkdirs(source)
        storePath = scratch.sub("store")
        let store = try Store.initialize(at: storePath, parameters: smallChunks)
        var ids: [String] = []
        var states: [[String: [UInt8]]] = []
        var files: [String: [UInt8]] = [:]
        for round in 0..<12 {
            for k in 0..<4 where (k + round) % 2 == 0 || round == 0 {
                let bytes = randomBytes(150_000 + k * 10_000, seed: UInt64(round * 10 + k))
                write(source + "/f\(k)", bytes)
                files["f\(k)"] = bytes
            }
            ids.append(try backup(store, [source], workers: 1).snapshotID)
            states.append(files)
        }
        for id in ids.prefix(9) { try store.deleteSnapshot(id: id) }
        for (id, state) in zip(ids, states).suffix(3) { expected[id] = state }
    }

    func cli(_ args: [String], environment: [String: String] = [:]) throws -> CLI.Result {
        try CLI.run(args + ["--store", storePath], environment: environment)
    }

    /// Every surviving snapshot restores to exactly what was backed up.
    func verifyRestores(_ store: String, into base: String) throws {
        for (id, files) in expected {
            let target = base + "/" + id
            let r = try CLI.run(["restore", id, "--store", store, "--target", target])
            #expect(r.code == 0, "\(r.stderr)")
            for (name, bytes) in files {
                #expect(FileManager.default.contents(atPath: target + source + "/" + name) == Data(bytes), "\(id) \(name)")
            }
        }
    }
}

@Suite("prune and locks")
struct PruneTests {
    @Test("prune deletes and repacks, then check passes and every survivor restores")
    func pruneThenCheck() throws {
        let f = try PruneFixture()
        let before = storeListing(f.storePath + "/packs").count
        // Temporary files a killed writer left behind (prune holds the exclusive lock: nobody writes).
        let packDirectory = try #require(try FileManager.default.contentsOfDirectory(atPath: f.storePath + "/packs").first)
        let leftovers = [f.storePath + "/index/.tmp-1234", f.storePath + "/packs/\(packDirectory)/.tmp-5678"]
        for path in leftovers { write(path, [1, 2, 3]) }
        let r = try f.cli(["prune", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        struct Report: Decodable { var packsDeleted: Int; var packsRepacked: Int; var bytesFreed: UInt64; var temporaryFilesRemoved: Int }
        let report = try JSONDecoder().decode(Report.self, from: Data(r.stdout.utf8))
        #expect(report.packsDeleted + report.packsRepacked > 0)
        #expect(report.bytesFreed > 0)
        #expect(report.temporaryFilesRemoved == 2)
        #expect(leftovers.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
        #expect(storeListing(f.storePath + "/packs").count <= before)
        #expect(try f.cli(["check", "--read-data"]).code == 0)
        try f.verifyRestores(f.storePath, into: f.scratch.sub("restored"))
        // A second prune finds nothing more to do.
        let again = try JSONDecoder().decode(Report.self, from: Data(try f.cli(["prune", "--json"]).stdout.utf8))
        #expect(again.packsDeleted == 0 && again.packsRepacked == 0)
    }

    @Test("prune killed at every step leaves a store that passes check and restores every survivor")
    func pruneKilledAnywhere() throws {
        let f = try PruneFixture()
        var killedAt: [Int] = []
        for point in 1...30 {
            let copy = f.scratch.sub("copy-\(point)")
            #expect(try Shell.run(["/bin/cp", "-a", f.storePath, copy]).code == 0)
            let r = try CLI.run(["prune", "--store", copy], environment: ["SHADOWMOVER_CRASH_AT": "\(point)"])
            if r.code != 0 { killedAt.append(point) }
            // A killed prune leaves its lock behind; its process is provably gone (this host), so the
            // next command removes it and says so.
            if r.code != 0 {
                let next = try CLI.run(["backup", "--store", copy, "--no-shadow-copy", f.source])
                #expect(next.code == 0, "\(next.stderr)")
                #expect(next.stderr.contains("that process no longer exists"), "\(next.stderr)")
            }
            let check = try CLI.run(["check", "--read-data", "--store", copy])
            #expect(check.code == 0, "after a kill at step \(point): \(check.stdout)")
            try f.verifyRestores(copy, into: f.scratch.sub("restored-\(point)"))
            // And a prune run to the end afterwards leaves it clean too.
            #expect(try CLI.run(["prune", "--store", copy]).code == 0)
            #expect(try CLI.run(["check", "--read-data", "--store", copy]).code == 0)
            try? FileManager.default.removeItem(atPath: copy)
        }
        #expect(killedAt.count >= 20, "prune was killed at \(killedAt.count) points")
    }

    @Test("an exclusive lock keeps backups out; a dead process's lock is removed; a stale one is reported, and unlock removes it")
    func locks() throws {
        let f = try PruneFixture()
        let store = try Store(path: f.storePath)
        let held = try StoreLock.acquire(store, exclusive: true, purpose: "prune")
        let blocked = try f.cli(["backup", "--no-shadow-copy", f.source])
        #expect(blocked.code == 1)
        #expect(blocked.stderr.contains("locked by pid \(getpid())"))
        held.release()
        #expect(try f.cli(["backup", "--no-shadow-copy", f.source]).code == 0)
        // A lock left by a process that is gone.
        let dead = try Child(["/bin/true"])
        dead.waitUntilExit()
        let record =
            #"{"created":"2026-01-01T00:00:00.000000000Z","exclusive":true,"heartbeat":"2026-01-01T00:00:00.000000000Z","host":"\#(ProcessInfo.processInfo.hostName)","pid":\#(dead.processIdentifier),"purpose":"prune"}"#
        write(f.storePath + "/locks/" + String(repeating: "ab", count: 32), Array(record.utf8))
        let cleared = try f.cli(["backup", "--no-shadow-copy", f.source])
        #expect(cleared.code == 0, "\(cleared.stderr)")
        #expect(cleared.stderr.contains("removed the lock of pid \(dead.processIdentifier)"), "\(cleared.stderr)")
        #expect(StoreLock.list(store).isEmpty)
        // A lock of another host, silent for longer than the stale limit: reported, never ignored.
        let other =
            #"{"created":"2026-01-01T00:00:00.000000000Z","exclusive":true,"heartbeat":"2026-01-01T00:00:00.000000000Z","host":"elsewhere","pid":1,"purpose":"prune"}"#
        write(f.storePath + "/locks/" + String(repeating: "cd", count: 32), Array(other.utf8))
        let stale = try f.cli(["backup", "--no-shadow-copy", f.source])
        #expect(stale.code == 1)
        #expect(stale.stderr.contains("stale lock"))
        #expect(stale.stderr.contains("shadowmover unlock"))
        #expect(try f.cli(["unlock"]).stdout.contains("1 lock(s) removed"))
        #expect(try f.cli(["backup", "--no-shadow-copy", f.source]).code == 0)
    }
}
