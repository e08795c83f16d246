import ChunkStore
import Foundation
import Testing

@Suite("inspect")
struct InspectTests {
    @Test("stats match an independent count on a known tree")
    func stats() throws {
        let f = try Fixture()
        let r = try f.cli(["inspect", "stats", "--json"])
        #expect(r.code == 0, "\(r.stderr)")
        struct S: Decodable {
            var files: Int; var logicalBytes: UInt64; var uniqueChunks: Int; var uniqueRawBytes: UInt64; var storedBytes: UInt64
            var dedupRatio: Double; var packFill: Double
            struct C: Decodable { var codec: String; var ratio: Double }
            var compression: [C]
            struct B: Decodable { var upTo: Int; var chunks: Int }
            var histogram: [B]
        }
        let s = try JSONDecoder().decode(S.self, from: Data(r.stdout.utf8))
        // a 200,000 + b 150,000 + same-as-a 200,000 (all chunks shared with a) + sub/c 50,000; random data stays raw.
        #expect(s.files == 4)
        #expect(s.logicalBytes == 600_000)
        #expect(s.uniqueRawBytes == 400_000)
        #expect(s.storedBytes == 400_000)
        #expect(abs(s.dedupRatio - 1.5) < 1e-9)
        #expect(s.compression.map(\.codec) == ["none"])
        var expectedChunks = Set<ChunkID>()
        for name in ["a", "b", "same-as-a", "sub/c"] { expectedChunks.formUnion(try f.node(name).content!) }
        #expect(s.uniqueChunks == expectedChunks.count)
        #expect(s.histogram.reduce(0) { $0 + $1.chunks } == expectedChunks.count)
        #expect(s.packFill > 0 && s.packFill <= 1)
        #expect(try f.cli(["inspect", "stats"]).stdout.contains("█"))
    }

    @Test("inspect chunk finds every file that references a shared chunk")
    func chunk() throws {
        let f = try Fixture()
        let shared = try f.node("a").content![0]
        let r = try f.cli(["inspect", "chunk", shared.hex])
        #expect(r.code == 0)
        #expect(r.stdout.contains("\(f.snapshot.prefix(8)):\(f.source)/a\n"))
        #expect(r.stdout.contains("\(f.snapshot.prefix(8)):\(f.source)/same-as-a"))
        #expect(r.stdout.contains("referenced by 2"))
        let missing = try f.cli(["inspect", "chunk", String(repeating: "0", count: 64)])
        #expect(missing.code == 1)
        #expect(missing.stderr.contains("not in the store's index"))
        #expect(try f.cli(["inspect", "chunk", "nothex"]).code != 0)
    }

    @Test("inspect pack shows referenced blobs, unreferenced once their snapshot is forgotten")
    func pack() throws {
        let f = try Fixture()
        let pack = f.store.index.lookup(try f.node("b").content![0])!.pack
        #expect(try f.cli(["inspect", "pack", pack.hex]).stdout.contains(" referenced"))
        try f.store.deleteSnapshot(id: f.snapshot)
        let after = try f.cli(["inspect", "pack", pack.hex])
        #expect(after.stdout.contains("unreferenced"))
        #expect(!after.stdout.contains(" referenced\n"))
    }

    @Test("inspect diff lists added, removed and changed files and the bytes new to the store")
    func diff() throws {
        let f = try Fixture()
        write(f.source + "/b", randomBytes(150_000, seed: 99))
        write(f.source + "/d", randomBytes(10_000, seed: 97))
        unlink(f.source + "/sub/c")
        let second = try backup(f.store, [f.source]).snapshotID
        let r = try f.cli(["inspect", "diff", f.snapshot, second, "--json"])
        struct D: Decodable { var added: [String]; var removed: [String]; var changed: [String]; var bytesNew: UInt64 }
        let d = try JSONDecoder().decode(D.self, from: Data(r.stdout.utf8))
        #expect(d.added == [f.source + "/d"])
        #expect(d.removed == [f.source + "/sub/c"])
        #expect(d.changed == [f.source + "/b"])
        #expect(d.bytesNew == 160_000)
    }

    @Test("inspect cat prints config, snapshot, tree and blob; damage is reported, not a crash")
    func cat() throws {
        let f = try Fixture()
        #expect(try f.cli(["inspect", "cat", "config"]).stdout.contains("fastcdc2020"))
        #expect(try f.cli(["inspect", "cat", "snapshot", f.snapshot]).stdout.contains("\"tree\""))
        let chunk = try f.node("b").content![0]
        #expect(try f.cli(["inspect", "cat", "blob", chunk.hex]).code == 0)
        #expect(try f.cli(["inspect", "cat", "blob", chunk.hex, "--raw"]).code == 0)
        #expect(try f.cli(["inspect", "cat", "blob", String(repeating: "1", count: 64)]).code == 1)
        let tree = try f.node("sub").subtree!
        #expect(try f.cli(["inspect", "cat", "tree", tree.hex]).stdout.contains("\"name\":\"c\""))
        let location = f.store.index.lookup(tree)!
        flipByte(f.store.packPath(location.pack), at: Int(location.entry.offset) + 2)
        let damaged = try f.cli(["inspect", "cat", "tree", tree.hex])
        #expect(damaged.code == 1)
        #expect(damaged.stderr.contains("tree \(tree) is damaged"))
        #expect(try f.cli(["inspect", "cat", "widget", "x"]).code != 0)
    }
}

@Suite("report")
struct ReportTests {
    @Test("inspect report writes one self-contained page with its charts")
    func report() throws {
        let f = try Fixture()
        write(f.source + "/d", randomBytes(10_000, seed: 97))
        _ = try backup(f.store, [f.source])
        let html = f.scratch.sub("report.html")
        let r = try f.cli(["inspect", "report", "--html", html])
        #expect(r.code == 0, "\(r.stderr)")
        let page = try String(contentsOfFile: html, encoding: .utf8)
        // Three charts; these backups read live files, so the freeze-window section says so instead.
        #expect(page.components(separatedBy: "<svg").count - 1 == 3)
        #expect(page.contains("No snapshot was taken through a shadow copy session"))
        for title in ["Stored vs logical size", "Dedup and compression", "Chunk size histogram", "Freeze window"] { #expect(page.contains(title)) }
        // Nothing fetched from elsewhere: no scripts, stylesheets or images by URL.
        #expect(!page.contains("<script"))
        #expect(!page.contains("src="))
        #expect(!page.contains("href="))
        #expect(page.replacingOccurrences(of: "xmlns='http://www.w3.org/2000/svg'", with: "").range(of: "http") == nil)
    }
}

@Suite("find")
struct FindTests {
    @Test(
        "find matches names and whole paths across snapshots, newest first; --snapshot, --path, --newer, --older and --ignore-case narrow it; a bad time is named"
    )
    func find() throws {
        let s = Scratch("find")
        let source = s.sub("source")
        mkdirs(source + "/db/old")
        write(source + "/db/app.db", [1, 2, 3])
        write(source + "/db/old/app.db", [4])
        write(source + "/notes.TXT", Array("n".utf8))
        setTimes(source + "/db/old/app.db", sec: 1_500_000_000, nsec: 0)  // 2017-07-14
        setTimes(source + "/db/app.db", sec: 1_700_000_000, nsec: 0)  // 2023-11-14
        let storePath = s.sub("store")
        let store = try Store.initialize(at: storePath, parameters: smallChunks)
        let first = try backup(store, [source]).snapshotID
        Thread.sleep(forTimeInterval: 1.1)  // snapshot times are ordered by the second
        write(source + "/db/new.db", [5])
        setTimes(source + "/db/new.db", sec: 1_750_000_000, nsec: 0)  // 2025-06-15
        let second = try backup(store, [source]).snapshotID

        struct Match: Decodable, Equatable { var snapshot: String; var path: String; var size: UInt64 }
        func find(_ args: [String]) throws -> [Match] {
            let r = try CLI.run(["find", "--json", "--store", storePath] + args)
            #expect(r.code == 0, "\(r.stderr)")
            return try JSONDecoder().decode([Match].self, from: Data(r.stdout.utf8))
        }
        let all = try find(["*.db"])
        #expect(all.map(\.snapshot) == [second, second, second, first, first], "newest snapshot first")
        #expect(Set(all.filter { $0.snapshot == second }.map(\.path)) == [source + "/db/app.db", source + "/db/new.db", source + "/db/old/app.db"])
        #expect(all.first { $0.path == source + "/db/app.db" }?.size == 3)
        #expect(try find(["*.db", "--snapshot", first]).map(\.snapshot) == [first, first])
        #expect(try find(["app.db", "--path", source + "/db/old"]).map(\.path) == [source + "/db/old/app.db", source + "/db/old/app.db"])
        #expect(
            try find([source + "/*/app.db"]).map(\.path) == [source + "/db/app.db", source + "/db/app.db"],
            "a glob with / matches whole paths, * within one component")
        #expect(try find(["*.db", "--newer", "2020-01-01", "--older", "2025-01-01T00:00:00Z"]).map(\.path) == [source + "/db/app.db", source + "/db/app.db"])
        #expect(try find(["*.db", "--newer", "2025-01-01", "--snapshot", "latest"]).map(\.path) == [source + "/db/new.db"])
        #expect(try find(["*.txt"]).isEmpty)
        #expect(try find(["*.txt", "--ignore-case"]).count == 2)
        let bad = try CLI.run(["find", "*.db", "--newer", "yesterday-ish", "--store", storePath])
        #expect(bad.code != 0)
        #expect(bad.stderr.contains("--newer yesterday-ish"), "\(bad.stderr)")
    }
}
