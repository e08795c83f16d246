import ChunkStore
import Chunking
import DataMover
import Foundation
import Testing

/// Every file in a store with its size, to show that a failed command changed nothing.
func storeListing(_ path: String) -> [String: Int] {
    var out: [String: Int] = [:]
    let e = FileManager.default.enumerator(atPath: path)
    while let rel = e?.nextObject() as? String {
        let attrs = try? FileManager.default.attributesOfItem(atPath: path + "/" + rel)
        out[rel] = (attrs?[.size] as? Int) ?? -1
    }
    return out
}

func flipByte(_ path: String, at offset: Int) {
    chmod(path, 0o644)
    let fd = open(path, O_RDWR)
    var b: UInt8 = 0
    pread(fd, &b, 1, off_t(offset))
    b ^= 0x5a
    pwrite(fd, &b, 1, off_t(offset))
    close(fd)
}

/// A store with one snapshot of a small tree: `a` and `b` in different chunks, `sub/c` in a subdirectory.
struct Fixture {
    let scratch = Scratch("bad")
    let store: Store
    let storePath: String
    let source: String
    let snapshot: String

    init() throws {
        source = scratch.sub("source")
        mkdirs(source + "/sub")
        write(source + "/a", randomBytes(200_000, seed: 1))
        write(source + "/b", randomBytes(150_000, seed: 2))
        write(source + "/same-as-a", randomBytes(200_000, seed: 1))  // shares every chunk with a
        write(source + "/sub/c", randomBytes(50_000, seed: 4))
        storePath = scratch.sub("store")
        store = try Store.initialize(at: storePath, parameters: smallChunks)
        snapshot = try backup(store, [source]).snapshotID
    }

    func cli(_ args: [String]) throws -> CLI.Result { try CLI.run(args + ["--store", storePath]) }

    func node(_ relative: String) throws -> Node {
        let parts = (source + "/" + relative).split(separator: "/")
        var tree = try store.loadTree(try store.loadSnapshot(id: snapshot).tree)
        var found: Node?
        for part in parts {
            found = tree.nodes.first { $0.name == part }
            if let sub = found?.subtree { tree = try store.loadTree(sub) }
        }
        return found!
    }
}

@Suite("Damage and bad input")
struct BadInputTests {
    @Test("a flipped byte in a pack is detected on restore and named, with the files it affects")
    func flippedPackByte() throws {
        let f = try Fixture()
        let victim = try f.node("a").content![1]
        let location = f.store.index.lookup(victim)!
        flipByte(f.store.packPath(location.pack), at: Int(location.entry.offset) + 100)

        let failed = try f.cli(["restore", f.snapshot, "-t", f.scratch.sub("r1")])
        #expect(failed.code == 1)
        #expect(failed.stderr.contains(victim.hex))
        #expect(failed.stderr.contains(location.pack.hex))
        #expect(failed.stderr.contains(f.source + "/a"))
        #expect(failed.stderr.contains(f.source + "/same-as-a"))  // every file that shares the chunk is named
        #expect(!failed.stderr.contains(f.source + "/b"))

        let partial = try f.cli(["restore", f.snapshot, "-t", f.scratch.sub("r2"), "--skip-damaged"])
        #expect(partial.code == 3)
        #expect(partial.stderr.contains(victim.hex))
        let r2 = f.scratch.sub("r2") + f.source
        #expect(FileManager.default.contents(atPath: r2 + "/b") == Data(randomBytes(150_000, seed: 2)))
        #expect(FileManager.default.contents(atPath: r2 + "/sub/c") == Data(randomBytes(50_000, seed: 4)))
        #expect(!FileManager.default.fileExists(atPath: r2 + "/a"))
        #expect(!FileManager.default.fileExists(atPath: r2 + "/same-as-a"))
    }

    @Test(
        "a chunk whose bytes no longer match its id is named alone by restore and check --read-data, though it was hashed together with its neighbours"
    )
    func mismatchInAPair() throws {
        let s = Scratch("pair-mismatch")
        let source = s.sub("source")
        mkdirs(source)
        for (name, seed) in [("f", 11), ("g", 13), ("h", 15)] { write(source + "/" + name, randomBytes(600_000, seed: UInt64(seed))) }
        // Uncompressed and unencrypted: a changed byte is still a valid blob, only its hash tells.
        let store = try Store.initialize(at: s.sub("store"), parameters: smallChunks, codec: .none)
        let snapshot = try backup(store, [source]).snapshotID
        let tree = try store.loadTree(try store.loadSnapshot(id: snapshot).tree)
        func content(_ name: String) throws -> [ChunkID] {
            var nodes = tree.nodes
            for part in (source + "/" + name).split(separator: "/") {
                let node = try #require(nodes.first { $0.name == part })
                if node.name == name { return try #require(node.content) }
                nodes = try store.loadTree(try #require(node.subtree)).nodes
            }
            return []
        }
        // Restore and check hash a run of chunks together (two lanes, each taking the next chunk as it
        // finishes one): a changed chunk in the middle of each file's run.
        let (f, g) = (try content("f"), try content("g"))
        #expect(f.count > 8 && g.count > 8)
        let victims = [f[4], g[7]]
        for victim in victims {
            let location = store.index.lookup(victim)!
            flipByte(store.packPath(location.pack), at: Int(location.entry.offset) + 11)
        }
        let innocent = Set(f + g).subtracting(victims)

        let restored = try CLI.run(["restore", snapshot, "-t", s.sub("r"), "--skip-damaged", "--store", s.sub("store")])
        #expect(restored.code == 3)
        #expect(FileManager.default.contents(atPath: s.sub("r") + source + "/h") == Data(randomBytes(600_000, seed: 15)))
        #expect(!FileManager.default.fileExists(atPath: s.sub("r") + source + "/f"))
        #expect(!FileManager.default.fileExists(atPath: s.sub("r") + source + "/g"))
        let check = try CLI.run(["check", "--read-data", "--store", s.sub("store")])
        #expect(check.code == 1)
        for (what, output) in [("restore", restored.stderr), ("check", check.stdout)] {
            #expect(victims.allSatisfy { output.contains($0.hex) }, "\(what) names both: \(output)")
            #expect(output.contains("content does not match its SHA-256"), "\(what): \(output)")
            #expect(!innocent.contains { output.contains($0.hex) }, "\(what) names only the changed chunks: \(output)")
        }
    }

    @Test("a damaged tree is named with the directory it held; --skip-damaged restores the rest")
    func damagedTree() throws {
        let f = try Fixture()
        let treeID = try f.node("sub").subtree!
        let location = f.store.index.lookup(treeID)!
        flipByte(f.store.packPath(location.pack), at: Int(location.entry.offset) + 3)
        let failed = try f.cli(["restore", f.snapshot, "-t", f.scratch.sub("r1")])
        #expect(failed.code == 1)
        #expect(failed.stderr.contains("tree \(treeID.hex)"))
        #expect(failed.stderr.contains(f.source + "/sub"))
        let partial = try f.cli(["restore", f.snapshot, "-t", f.scratch.sub("r2"), "--skip-damaged"])
        #expect(partial.code == 3)
        #expect(FileManager.default.contents(atPath: f.scratch.sub("r2") + f.source + "/a") == Data(randomBytes(200_000, seed: 1)))
    }

    @Test("a damaged index segment is named, and repair index rebuilds it from the packs")
    func damagedIndexSegment() throws {
        let f = try Fixture()
        let segment = try FileManager.default.contentsOfDirectory(atPath: f.storePath + "/index")[0]
        flipByte(f.storePath + "/index/" + segment, at: 40)
        let failed = try f.cli(["restore", f.snapshot, "-t", f.scratch.sub("r1")])
        #expect(failed.code == 1)
        #expect(failed.stderr.contains("index segment \(segment)"))
        #expect(failed.stderr.contains("repair index"))
        let repaired = try f.cli(["repair", "index"])
        #expect(repaired.code == 0)
        let restored = try f.cli(["restore", f.snapshot, "-t", f.scratch.sub("r2")])
        #expect(restored.code == 0)
        #expect(FileManager.default.contents(atPath: f.scratch.sub("r2") + f.source + "/a") == Data(randomBytes(200_000, seed: 1)))
    }

    @Test("a damaged snapshot record is named and not used")
    func damagedSnapshotRecord() throws {
        let f = try Fixture()
        flipByte(f.storePath + "/snapshots/" + f.snapshot, at: 20)
        let restore = try f.cli(["restore", f.snapshot, "-t", f.scratch.sub("r1")])
        #expect(restore.code == 1)
        #expect(restore.stderr.contains("snapshot record \(f.snapshot) is damaged"))
        let list = try f.cli(["snapshots"])
        #expect(list.code == 1)
        #expect(list.stderr.contains(f.snapshot))
    }

    @Test("missing store, non-store, existing store and newer format each get a clear error")
    func storeErrors() throws {
        let s = Scratch("stores")
        let missing = try CLI.run(["snapshots", "--store", s.sub("nope")])
        #expect(missing.code == 1)
        #expect(missing.stderr.contains("does not exist"))
        mkdirs(s.sub("plain"))
        write(s.sub("plain/file"), [1])
        let plain = try CLI.run(["snapshots", "--store", s.sub("plain")])
        #expect(plain.code == 1)
        #expect(plain.stderr.contains("is not a shadowmover store"))
        #expect(try CLI.run(["init", "--store", s.sub("plain")]).code == 1)
        #expect(storeListing(s.sub("plain")) == ["file": 1])

        // A store without encryption: this test edits its config by hand.
        #expect(try CLI.run(["init", "--no-encryption", "--store", s.sub("store")]).code == 0)
        let before = storeListing(s.sub("store"))
        let again = try CLI.run(["init", "--store", s.sub("store")])
        #expect(again.code == 1)
        #expect(again.stderr.contains("already exists"))
        #expect(storeListing(s.sub("store")) == before)

        let noStore = try CLI.run(["snapshots"])
        #expect(noStore.code != 0)
        #expect(noStore.stderr.contains("SHADOWMOVER_STORE"))
        let viaEnv = try CLI.run(["snapshots"], environment: ["SHADOWMOVER_STORE": s.sub("store")])
        #expect(viaEnv.code == 0)

        // A version-1 store (before content lists, and before configs carried a checksum) is read as it
        // is; a backup marks it version 2 first.
        let configPath = s.sub("store") + "/config"
        func setVersion(_ from: Int, _ to: Int) {
            var config = String(decoding: FileManager.default.contents(atPath: configPath)!, as: UTF8.self)
            #expect(config.contains("\"version\":\(from)"))
            config = config.replacingOccurrences(of: #","checksum":"[0-9a-f]{64}""#, with: "", options: .regularExpression)
            config = config.replacingOccurrences(of: "\"version\":\(from)", with: "\"version\":\(to)")
            chmod(configPath, 0o644)
            write(configPath, Array(config.utf8))
        }
        setVersion(2, 1)
        #expect(try CLI.run(["snapshots", "--store", s.sub("store")]).code == 0)
        mkdirs(s.sub("data"))
        write(s.sub("data/f"), randomBytes(1000, seed: 3 << 8))
        #expect(try CLI.run(["backup", "--no-shadow-copy", "--store", s.sub("store"), s.sub("data")]).code == 0)
        #expect(String(decoding: FileManager.default.contents(atPath: configPath)!, as: UTF8.self).contains("\"version\":2"))

        // A config from a newer format version.
        setVersion(2, 4)
        let newer = try CLI.run(["snapshots", "--store", s.sub("store")])
        #expect(newer.code == 1)
        #expect(newer.stderr.contains("format version 4, newer than this shadowmover supports (3)"), "\(newer.stderr)")
    }

    @Test("unknown and ambiguous snapshot ids are refused")
    func snapshotIDs() throws {
        let f = try Fixture()
        var ids = [f.snapshot]
        // Seventeen snapshots share a first hex digit somewhere (pigeonhole).
        for i in 0..<16 {
            write(f.source + "/b", randomBytes(1000, seed: UInt64(50 + i)))
            ids.append(try backup(f.store, [f.source]).snapshotID)
        }
        let byDigit = Dictionary(grouping: ids) { $0.prefix(1) }
        let shared = byDigit.first { $0.value.count > 1 }!.key
        let ambiguous = try f.cli(["restore", String(shared), "-t", f.scratch.sub("r")])
        #expect(ambiguous.code == 1)
        #expect(ambiguous.stderr.contains("ambiguous"))
        let unknown = try f.cli(["restore", "zzzz", "-t", f.scratch.sub("r")])
        #expect(unknown.code == 1)
        #expect(unknown.stderr.contains("no snapshot matches 'zzzz'"))
        #expect(!FileManager.default.fileExists(atPath: f.scratch.sub("r")))
    }

    @Test("a backup path that does not exist fails and changes nothing")
    func missingBackupPath() throws {
        let f = try Fixture()
        let before = storeListing(f.storePath)
        let result = try f.cli(["backup", f.source, f.scratch.sub("does-not-exist")])
        #expect(result.code == 1)
        #expect(result.stderr.contains("does-not-exist"))
        #expect(storeListing(f.storePath) == before)
    }

    @Test("restore refuses a non-empty target unless --overwrite")
    func nonEmptyTarget() throws {
        let f = try Fixture()
        let target = f.scratch.sub("t")
        mkdirs(target)
        write(target + "/existing", [9])
        let refused = try f.cli(["restore", f.snapshot, "-t", target])
        #expect(refused.code == 1)
        #expect(refused.stderr.contains("not empty"))
        #expect(storeListing(target) == ["existing": 1])
        let forced = try f.cli(["restore", f.snapshot, "-t", target, "--overwrite"])
        #expect(forced.code == 0)
        #expect(FileManager.default.contents(atPath: target + f.source + "/a") == Data(randomBytes(200_000, seed: 1)))
        // Overwriting again replaces the files in place.
        #expect(try f.cli(["restore", f.snapshot, "-t", target, "--overwrite"]).code == 0)
    }

    @Test("restore refuses a tree entry whose name would escape the target, naming its tree", arguments: ["..", "a/b", "x\0y", ".", "", "/"])
    func escapingNames(name: String) throws {
        let s = Scratch("escape")
        let store = try Store.initialize(at: s.sub("store"), parameters: smallChunks)
        // Hand-craft a malicious snapshot: a directory holding an entry with a dangerous name.
        let now = Timestamp.now()
        var evil = Node(nameBytes: Array(name.utf8), kind: .file, mode: 0o644, uid: 0, gid: 0, mtime: now, ctime: now, size: 0, device: 1, inode: 1, links: 1)
        evil.content = []
        let packs = store.makePackWriter()
        func put(_ tree: Tree) throws -> ChunkID {
            let bytes = try tree.encoded()
            let id = ChunkID(hashing: bytes)
            _ = store.index.claim(id)
            let buffer = try packs.checkout(room: bytes.count)
            buffer.append(id: id, type: .tree, rawLength: bytes.count) { free in
                bytes.withUnsafeBytes { free.copyMemory(from: $0) }
                return (.none, bytes.count)
            }
            try packs.checkin(buffer)
            return id
        }
        let inner = try put(Tree(nodes: [evil]))
        var dir = Node(
            nameBytes: Array("dir".utf8), kind: .directory, mode: 0o755, uid: 0, gid: 0, mtime: now, ctime: now, size: 0, device: 1, inode: 2, links: 1)
        dir.subtree = inner
        let root = try put(Tree(nodes: [dir]))
        try packs.commit()
        let id = try store.saveSnapshot(
            SnapshotRecord(time: Date(), hostname: "h", username: "u", paths: ["/dir"], tree: root, tags: [], programVersion: "test", summary: BackupSummary()))
        let target = s.sub("target")
        let result = try CLI.run(["restore", id, "-t", target, "--store", s.sub("store")])
        #expect(result.code == 1)
        #expect(result.stderr.contains("tree \(inner)"), "\(result.stderr)")
        #expect(result.stderr.contains("not a single path component"), "\(result.stderr)")
        #expect(result.stderr.contains("/dir"))
        #expect(storeListing(target).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: s.path + "/escaped"))
    }

    @Test("unreadable files are reported and skipped; the rest commits and the exit code is 3")
    func unreadableFiles() throws {
        let s = Scratch("unreadable")
        chmod(s.path, 0o755)
        let source = s.sub("source")
        mkdirs(source + "/locked-dir")
        write(source + "/readable", [1, 2, 3])
        write(source + "/secret", [4, 5, 6])
        write(source + "/locked-dir/inside", [7])
        chmod(source + "/secret", 0o000)
        chmod(source + "/locked-dir", 0o000)
        let storePath = s.sub("store")
        #expect(try CLI.run(["init", "--store", storePath]).code == 0)
        var prefix: [String] = []
        if isRoot {
            // Root reads everything; drop to nobody so permissions apply.
            #expect(try Shell.run(["/bin/chown", "-R", "65534:65534", storePath]).code == 0)
            prefix = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        }
        let result = try CLI.run(["backup", source, "--store", storePath], prefix: prefix)
        #expect(result.code == 3)
        #expect(result.stderr.contains(source + "/secret"))
        #expect(result.stderr.contains(source + "/locked-dir"))
        let store = try Store(path: storePath)
        let snapshots = try store.snapshots().records
        #expect(snapshots.count == 1)
        #expect(snapshots[0].record.summary.errors.count == 2)
        _ = try restore(store, "latest", to: s.sub("r"))
        #expect(FileManager.default.contents(atPath: s.sub("r") + source + "/readable") == Data([1, 2, 3]))
        #expect(!FileManager.default.fileExists(atPath: s.sub("r") + source + "/secret"))
    }

    @Test("debug chunk --unkeyed --json gives the reference cut points")
    func debugChunk() throws {
        let s = Scratch("debugchunk")
        // The first reference vector (see Tests/ChunkingTests/ReferenceVectors.swift).
        var data = [UInt8]()
        var x: UInt64 = 1
        while data.count < 1 << 20 {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            withUnsafeBytes(of: x.littleEndian) { data.append(contentsOf: $0) }
        }
        write(s.sub("corpus"), data)
        let r = try CLI.run(["debug", "chunk", s.sub("corpus"), "--unkeyed", "--min", "4096", "--avg", "16384", "--max", "65536", "--level", "1", "--json"])
        #expect(r.code == 0)
        struct Report: Decodable { struct Item: Decodable { var offset: Int; var length: Int; var sha256: String }; var chunks: [Item] }
        let report = try JSONDecoder().decode(Report.self, from: Data(r.stdout.utf8))
        #expect(Array(report.chunks.map(\.length).prefix(5)) == [26453, 10919, 33478, 15116, 7441])
        #expect(report.chunks.map(\.length).reduce(0, +) == 1 << 20)
        #expect(report.chunks[0].sha256 == ChunkID(hashing: data[0..<26453]).hex)
        let keyed = try CLI.run(["debug", "chunk", s.sub("corpus")])
        #expect(keyed.code != 0)
        #expect(keyed.stderr.contains("--unkeyed"))
    }
}
