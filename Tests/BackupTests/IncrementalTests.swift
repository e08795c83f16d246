import ChunkStore
import DataMover
import Foundation
import Testing

@Suite("Files cache and faults while reading")
struct IncrementalTests {
    @Test("unchanged files re-use the parent's chunk lists without being read; changes and --force read again")
    func filesCache() throws {
        let b = try EveryKindBackup("cache")
        let (s, source, store, first) = (b.s, b.source, b.store, b.result)
        #expect(first.record.summary.filesUnchanged == 0)
        let second = try backup(store, [source])
        #expect(second.record.summary.bytesRead == 0)
        #expect(second.record.summary.filesUnchanged == first.record.summary.files)
        #expect(try subtree(store, second.record.tree, source) == subtree(store, first.record.tree, source))

        write(source + "/dir/text.txt", Array("rewritten".utf8))  // new size, mtime, ctime
        chmod(source + "/big.bin", 0o600)  // ctime only
        let third = try backup(store, [source])
        // big.bin is hard-linked, so both of its names are read again.
        #expect(third.record.summary.bytesRead == 9 + 2 * 3_000_000)
        #expect(third.record.summary.filesUnchanged == first.record.summary.files - 3)

        var forced = BackupOptions(paths: [source])
        forced.force = true
        let fourth = try Backup(store: store, options: forced).run()
        #expect(fourth.record.summary.filesUnchanged == 0)
        #expect(fourth.record.summary.bytesRead == third.record.summary.bytesRead + third.record.summary.bytesUnchanged)

        let target = s.sub("restore")
        _ = try restore(store, third.snapshotID, to: target)
        #expect(FileManager.default.contents(atPath: target + source + "/dir/text.txt") == Data("rewritten".utf8))
        #expect(FileManager.default.contents(atPath: target + source + "/big.bin") == Data(randomBytes(3_000_000, seed: 1)))
    }

    @Test("a file that changes size while read is recorded as read and reported; EIO is reported; both exit 3")
    func changingAndFailingFiles() throws {
        let s = Scratch("changing")
        let source = s.sub("source")
        mkdirs(source)
        write(source + "/steady", [1, 2, 3])
        let helper = try Child(["/bin/sleep", "30"])
        defer { helper.terminate(); helper.waitUntilExit() }
        // /proc files claim size 0 and then deliver bytes: a file that grew while being read.
        let status = "/proc/\(helper.processIdentifier)/status"
        let memory = "/proc/\(helper.processIdentifier)/mem"  // reading at offset 0 gives EIO
        let storePath = s.sub("store")
        _ = try CLI.run(["init", "--store", storePath])
        let r = try CLI.run(["backup", "--store", storePath, "--no-shadow-copy", source, status, memory])
        #expect(r.code == 3)
        #expect(r.stderr.contains("\(status) changed size while being read"))
        #expect(r.stderr.contains(memory))
        #expect(r.stderr.contains("Input/output error") || r.stderr.contains("Permission denied"))
        let store = try Store(path: storePath)
        let snapshot = try #require(try store.snapshots().records.last)
        #expect(snapshot.record.summary.errors.count == 2)
        _ = try restore(store, "latest", to: s.sub("r"))
        let restoredStatus = try String(contentsOfFile: s.sub("r") + status, encoding: .utf8)
        #expect(restoredStatus.contains("Name:"))
        #expect(FileManager.default.contents(atPath: s.sub("r") + source + "/steady") == Data([1, 2, 3]))
    }

    @Test("--json emits progress events as JSON lines, then the summary; no progress when not on a terminal")
    func progressEvents() throws {
        let s = Scratch("progress")
        let source = s.sub("source")
        mkdirs(source)
        for i in 0..<8 { write(source + "/f\(i)", randomBytes(8 << 20, seed: UInt64(i))) }
        let storePath = s.sub("store")
        _ = try CLI.run(["init", "--store", storePath])
        let r = try CLI.run(["backup", "--store", storePath, "--no-shadow-copy", "--json", "--progress-interval", "0.005", "--workers", "1", source])
        #expect(r.code == 0)
        let lines = r.stdout.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.allSatisfy { $0 != nil })
        let progress = lines.compactMap { $0 }.filter { $0["type"] as? String == "progress" }
        #expect(!progress.isEmpty)
        #expect(progress.allSatisfy { $0["bytesDone"] != nil && $0["bytesTotal"] != nil && $0["bytesPerSecond"] != nil })
        #expect(lines.last??["type"] as? String == "summary")
        let plain = try CLI.run(["backup", "--store", storePath, "--no-shadow-copy", "--progress-interval", "0.005", source])
        #expect(!plain.stderr.contains("\r"))
    }

    @Test("a store whose disk fills up fails with a clear error, stays consistent, and works once space is freed", .needsRoot)
    func diskFull() throws {
        guard try requireRoot("the disk-full test (a small loop volume)") else { return }
        let s = Scratch("full")
        let volume = try LoopVolume("ext4", in: s, sizeMB: 64)
        let storePath = volume.sub("store")
        _ = try CLI.run(["init", "--store", storePath])
        let small = s.sub("small")
        mkdirs(small)
        write(small + "/a", randomBytes(100_000, seed: 1))
        #expect(try CLI.run(["backup", "--store", storePath, "--no-shadow-copy", small]).code == 0)
        write(volume.sub("filler"), [UInt8](repeating: 7, count: 20 << 20))
        let big = s.sub("big")
        mkdirs(big)
        write(big + "/random", randomBytes(60 << 20, seed: 2))
        let failed = try CLI.run(["backup", "--store", storePath, "--no-shadow-copy", big])
        #expect(failed.code == 1)
        #expect(failed.stderr.contains("No space left on device"))
        #expect(try Store(path: storePath).snapshots().records.count == 1)
        unlink(volume.sub("filler"))
        write(small + "/b", randomBytes(50_000, seed: 3))
        let next = try CLI.run(["backup", "--store", storePath, "--no-shadow-copy", small])
        #expect(next.code == 0, "\(next.stderr)")
        let store = try Store(path: storePath)
        #expect(store.index.damagedSegments.isEmpty)
        _ = try restore(store, "latest", to: s.sub("r"))
        #expect(FileManager.default.contents(atPath: s.sub("r") + small + "/b") == Data(randomBytes(50_000, seed: 3)))
    }
}
