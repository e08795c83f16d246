import ChunkStore
import Foundation
import Testing

/// Starts the CLI without waiting for it, with `environment` added to the test's own; its standard
/// error goes to `stderr` (discarded when nil), its output is discarded.
func startCLI(_ arguments: [String], environment: [String: String] = [:], stderr: Subprocess.Collector? = nil) throws -> Child {
    try Child([CLI.binary] + CLI.arguments(arguments), environment: CLI.environment(environment), stderr: stderr.map { .pipe($0) } ?? .null)
}

/// Files of `source` (relative path → content), for comparing a restore with what was backed up.
func contents(_ root: String) -> [String: [UInt8]] {
    TreeSnapshot(root).entries.compactMapValues(\.content)
}

@Suite("Faults: killed backups, a full disk, prune during restore")
struct FaultTests {
    @Test("a backup killed at random moments (20 times) leaves a store that checks clean and restores the last snapshot")
    func killedBackups() throws {
        let s = Scratch("kill")
        let source = s.sub("source")
        mkdirs(source)
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store, "--min", "4096", "--avg", "16384", "--max", "65536"]).code == 0)
        var generator = SystemRandomNumberGenerator()
        var last: (id: String, files: [String: [UInt8]])?
        var killed = 0
        for round in 0..<20 {
            // New data every round, so every backup has packs and index segments to write.
            for k in 0..<6 { write(source + "/f\(round)-\(k)", randomBytes(1_500_000, seed: UInt64(round * 100 + k) << 8)) }
            let backup = try startCLI(["backup", source, "--store", store, "--workers", "2"])
            usleep(UInt32.random(in: 2_000...150_000, using: &generator))
            if backup.isRunning {
                kill(backup.processIdentifier, SIGKILL)
                killed += 1
            }
            backup.waitUntilExit()

            let check = try CLI.run(["check", "--store", store])
            #expect(check.code == 0, "round \(round): check after a kill: \(check.stdout)\(check.stderr)")
            if let last {
                let target = s.sub("restore-\(round)")
                let r = try CLI.run(["restore", last.id, "--store", store, "--target", target])
                #expect(r.code == 0, "round \(round): \(r.stderr)")
                #expect(contents(target + source) == last.files, "round \(round): the previous snapshot restores identical")
                try? FileManager.default.removeItem(atPath: target)
            }
            // The next backup succeeds: a killed one's lock and leftovers do not stand in its way.
            let next = try CLI.run(["backup", source, "--store", store, "--json"])
            #expect(next.code == 0, "round \(round): \(next.stderr)")
            let snapshots = try Store(path: store).snapshots().records
            last = (try #require(snapshots.last).id, contents(source))
        }
        #expect(killed >= 10, "most backups were killed while running (\(killed) of 20)")
    }

    @Test("a full disk fails the backup clearly; the store checks clean, restores, and backs up again once space is freed", .needsRoot)
    func fullDisk() throws {
        guard try requireRoot("a small loop filesystem") else { return }
        let s = Scratch("enospc")
        let volume = try LoopVolume("ext4", in: s, sizeMB: 48, name: "small")
        let store = volume.sub("store")
        #expect(try CLI.run(["init", "--store", store, "--codec", "none"]).code == 0)
        let source = s.sub("source")
        mkdirs(source)
        write(source + "/small", randomBytes(2_000_000, seed: 11 << 8))
        let first = try CLI.run(["backup", source, "--store", store])
        #expect(first.code == 0, "\(first.stderr)")
        let firstFiles = contents(source)
        let firstID = try #require(try Store(path: store).snapshots().records.last).id

        // More than the volume holds: incompressible, and stored raw.
        let packsBefore = storeListing(store).keys.filter { $0.hasPrefix("packs/") && $0.split(separator: "/").count == 3 }
        write(source + "/big", randomBytes(80_000_000, seed: 12 << 8))
        let full = try CLI.run(["backup", source, "--store", store])
        #expect(full.code == 1)
        #expect(full.stderr.contains("No space left on device") && full.stderr.contains("removed as it stops"), "\(full.stderr)")
        #expect(try Store(path: store).snapshots().records.count == 1, "the failed backup committed nothing")
        // What it wrote is gone with it: the disk is not left full.
        let packsAfter = storeListing(store).keys.filter { $0.hasPrefix("packs/") && $0.split(separator: "/").count == 3 }
        #expect(Set(packsAfter) == Set(packsBefore), "left: \(Set(packsAfter).subtracting(packsBefore))")
        #expect(storeListing(store).keys.allSatisfy { !($0.split(separator: "/").last ?? "").hasPrefix(".tmp-") })

        let check = try CLI.run(["check", "--store", store])
        #expect(check.code == 0, "\(check.stdout)\(check.stderr)")
        let target = s.sub("target")
        #expect(try CLI.run(["restore", firstID, "--store", store, "--target", target]).code == 0)
        #expect(contents(target + source) == firstFiles)

        // Space freed: the big file goes, prune removes what the failed backup left.
        try FileManager.default.removeItem(atPath: source + "/big")
        let prune = try CLI.run(["prune", "--store", store])
        #expect(prune.code == 0, "\(prune.stderr)")
        write(source + "/more", randomBytes(3_000_000, seed: 13 << 8))
        let again = try CLI.run(["backup", source, "--store", store])
        #expect(again.code == 0, "\(again.stderr)")
        #expect(try CLI.run(["check", "--store", store, "--read-data"]).code == 0)
    }

    @Test("a restore into a full disk fails naming the file and the cause, and does not hang", .needsRoot)
    func restoreIntoFullDisk() throws {
        guard try requireRoot("a small loop filesystem") else { return }
        let s = Scratch("enospc-restore")
        let source = s.sub("source")
        mkdirs(source)
        write(source + "/big", randomBytes(64 << 20, seed: 14 << 8))
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        #expect(try CLI.run(["backup", source, "--store", store]).code == 0)
        let volume = try LoopVolume("ext4", in: s, sizeMB: 32, name: "small")
        let restored = try CLI.run(["restore", "latest", "--store", store, "--target", volume.sub("target")])
        #expect(restored.code == 1)
        #expect(restored.stderr.contains("No space left on device") && restored.stderr.contains("/big"), "\(restored.stderr)")
    }

    @Test("prune waits for a running restore instead of repacking the packs it reads")
    func pruneDuringRestore() throws {
        let f = try PruneFixture()
        let id = try #require(f.expected.keys.sorted().first)
        let restore = try startCLI(["restore", id, "--store", f.storePath, "--target", f.scratch.sub("target"), "--workers", "1"])
        // Hold the restore still once its lock is visible, so prune meets it for certain.
        let deadline = Date().addingTimeInterval(30)
        var locked = false
        while Date() < deadline && restore.isRunning {
            let locks = (try? FileManager.default.contentsOfDirectory(atPath: f.storePath + "/locks")) ?? []
            if locks.contains(where: { !$0.hasPrefix(".") }) {  // a committed lock, not its temporary file
                kill(restore.processIdentifier, SIGSTOP)
                locked = true
                break
            }
            usleep(200)
        }
        if locked {
            let prune = try f.cli(["prune"])
            kill(restore.processIdentifier, SIGCONT)
            #expect(prune.code == 1)
            #expect(prune.stderr.contains("restore"), "the refusal names the restore holding the lock: \(prune.stderr)")
        }
        restore.waitUntilExit()
        #expect(locked, "the restore's lock was seen while it ran")
        #expect(restore.terminationStatus == 0)
        #expect(try f.cli(["prune"]).code == 0, "prune runs once the restore is done")
        try f.verifyRestores(f.storePath, into: f.scratch.sub("after"))
    }
}

/// The state letter of a process (`/proc/PID/stat`): "T" while it is stopped.
func processState(_ pid: Int32) -> String {
    let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
    guard let close = stat.lastIndex(of: ")") else { return "?" }
    return String(stat[stat.index(close, offsetBy: 2)])
}

@Suite("Faults: writers that hold an application")
struct FrozenApplicationTests {
    @Test(
        "a writer that hangs at freeze or thaw, crashes or answers garbage never leaves its application stopped, and abort never reaches a fresh copy",
        arguments: ["--hang freeze", "--hang thaw", "--crash freeze --guard", "--garbage freeze"])
    func applicationRunsAgain(misbehaviour: String) throws {
        guard try requireRoot("the writer escalation tests (loop volumes)") else { return }
        let s = Scratch("frozen-app")
        let volume = try LoopVolume("btrfs", in: s)
        mkdirs(volume.sub("data"))
        write(volume.sub("data/file"), [1, 2, 3])
        let store = s.sub("store")
        _ = try CLI.run(["init", "--store", store])
        let app = try Child(["/bin/sleep", "600"])
        defer { kill(app.processIdentifier, SIGKILL); app.waitUntilExit() }
        let limit = 1.0
        for run in 0..<20 {  // issue 16: every time, 20 runs per misbehaviour
            let log = s.sub("w\(run).log")
            let r = try CLI.run(
                [
                    "backup", "--store", store, "--writers-dir", "/nonexistent", "--freeze-timeout", "\(limit)", "--retries", "0",
                    "--exec-writer", "\(Shell.faultWriter) \(log) --app \(app.processIdentifier) \(misbehaviour)", volume.sub("data"),
                ],
                environment: coordinatorEnv(s))
            #expect(r.code == 1, "run \(run): \(r.stderr)")
            // The guard of a crashed writer wakes the application a moment after the crash.
            var state = processState(app.processIdentifier)
            for _ in 0..<100 where state == "T" {
                usleep(10_000)
                state = processState(app.processIdentifier)
            }
            #expect(state != "T", "run \(run) with \(misbehaviour): the application is still stopped")
            #expect(lines(log).filter { $0 == "start" }.count == 1, "run \(run): one writer process per session: \(lines(log))")
        }
    }
}
