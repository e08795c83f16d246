import ChunkStore
import Chunking
import DataMover
import Foundation
import Testing

/// Builds a tree with every entry kind a backup must carry.
func makeEveryKindTree(at root: String) {
    mkdirs(root + "/dir/nested/deeper")
    mkdirs(root + "/empty-dir")
    write(root + "/small.txt", Array("hello, shadow copy\n".utf8))
    write(root + "/empty", [])
    write(root + "/big.bin", randomBytes(3_000_000, seed: 1))
    write(root + "/dir/text.txt", Array(String(repeating: "freeze thaw ", count: 50_000).utf8))
    write(root + "/dir/nested/deeper/leaf", randomBytes(70_000, seed: 2))
    // Name bytes that are not UTF-8.
    var raw = Array((root + "/dir/").utf8) + [0x6E, 0x6F, 0xE9, 0xFF] + [0]
    raw.withUnsafeMutableBufferPointer { b in
        b.withMemoryRebound(to: CChar.self) { p in
            let fd = open(p.baseAddress!, O_CREAT | O_WRONLY, 0o640)
            _ = "latin".withCString { write(fd, $0, 5) }
            close(fd)
        }
    }
    // Sparse: 8 MiB with data only at 1 MiB and at the end.
    let sparse = root + "/sparse.img"
    let fd = open(sparse, O_CREAT | O_WRONLY, 0o600)
    let block = randomBytes(65536, seed: 3)
    _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 1 << 20) }
    _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, (8 << 20) - 65536) }
    close(fd)
    // Links.
    symlink("small.txt", root + "/link-to-small")
    symlink("/nonexistent/target", root + "/dangling")
    link(root + "/big.bin", root + "/dir/hardlink-to-big")
    link(root + "/small.txt", root + "/dir/nested/hardlink-to-small")
    mkfifo(root + "/fifo", 0o640)
    // Modes, owners, xattrs, nanosecond times.
    chmod(root + "/small.txt", 0o4755)
    chmod(root + "/dir/nested", 0o750)
    chmod(root + "/empty-dir", 0o1777)
    setXattr(root + "/small.txt", "user.shadowmover.note", "writer=sqlite")
    setXattr(root + "/dir", "user.component", "database")
    if isRoot {
        chown(root + "/dir/text.txt", 1234, 5678)
        lchown(root + "/link-to-small", 4321, 8765)
        mknod(root + "/dir/null-device", S_IFCHR | 0o600, makedev(1, 3))
    }
    for (i, p) in ["small.txt", "big.bin", "dir/text.txt", "sparse.img", "empty", "dir", "dir/nested", "link-to-small", "fifo", "empty-dir"].enumerated() {
        setTimes(root + "/" + p, sec: 1_600_000_000 + i * 1000, nsec: 123_456_789 - i)
    }
}

func makedev(_ major: UInt32, _ minor: UInt32) -> dev_t {
    dev_t((UInt64(major & 0xfff) << 8) | UInt64(minor & 0xff) | (UInt64(minor & ~0xff) << 12) | (UInt64(major & ~0xfff) << 32))
}

func backup(_ store: Store, _ paths: [String], workers: Int = 2) throws -> BackupResult {
    var o = BackupOptions(paths: paths)
    o.workers = workers
    return try Backup(store: store, options: o).run()
}

func restore(
    _ store: Store, _ snapshot: String, to target: String, subPath: String? = nil, skipDamaged: Bool = false,
    options adjust: (inout RestoreOptions) -> Void = { _ in }
) throws -> RestoreSummary {
    var o = RestoreOptions(target: target)
    o.subPath = subPath
    o.skipDamaged = skipDamaged
    adjust(&o)
    let (_, record) = try store.resolveSnapshot(snapshot)
    return try Restorer(store: store, options: o).run(snapshot: record)
}

/// Backs `source` up into a new store in `s` and restores it into `s`/restore, expecting no errors, no
/// damage, and the restored tree identical to the source in content and metadata.
/// - Returns: the store, and the restore's target and summary, for the caller's own checks.
func expectRoundTrip(
    _ source: String, in s: Scratch, options adjust: (inout RestoreOptions) -> Void = { _ in }
) throws -> (store: Store, target: String, summary: RestoreSummary) {
    let store = try Store.initialize(at: s.sub("store"), parameters: ChunkerParameters.default)
    let result = try backup(store, [source])
    #expect(result.errors.isEmpty)
    let target = s.sub("restore")
    let summary = try restore(store, result.snapshotID, to: target, options: adjust)
    #expect(summary.damage.isEmpty)
    let before = TreeSnapshot(source), after = TreeSnapshot(target + source)
    #expect(before.entries.keys.sorted() == after.entries.keys.sorted())
    for (path, entry) in before.entries { #expect(after.entries[path] == entry, "\(path)") }
    return (store, target, summary)
}

/// The tree id of the directory at `path` in a snapshot's root tree.
func subtree(_ store: Store, _ root: ChunkID, _ path: String) throws -> ChunkID? {
    var id = root
    for part in path.split(separator: "/") {
        guard let node = try store.loadTree(id).nodes.first(where: { $0.name == part }), let sub = node.subtree else { return nil }
        id = sub
    }
    return id
}

/// A tree of every entry kind at `source` in a new scratch directory `name`, backed up into a new store
/// with small chunks: the start of most round-trip tests.
struct EveryKindBackup {
    let s: Scratch
    let source: String
    let store: Store
    let result: BackupResult

    init(_ name: String) throws {
        s = Scratch(name)
        source = s.sub("source")
        makeEveryKindTree(at: source)
        store = try Store.initialize(at: s.sub("store"), parameters: smallChunks)
        result = try backup(store, [source])
    }
}

@Suite("Backup and restore")
struct RoundTripTests {
    @Test("a tree with every entry kind restores identical in content and metadata")
    func everyEntryKind() throws {
        let b = try EveryKindBackup("roundtrip")
        let (s, source, store, result) = (b.s, b.source, b.store, b.result)
        #expect(result.errors.isEmpty)
        let target = s.sub("restore")
        let summary = try restore(store, result.snapshotID, to: target)
        #expect(summary.damage.isEmpty)
        let restoredRoot = target + source
        let before = TreeSnapshot(source), after = TreeSnapshot(restoredRoot)
        #expect(before.entries.keys.sorted() == after.entries.keys.sorted())
        for (path, entry) in before.entries {
            #expect(after.entries[path] == entry, "\(path)")
        }
        #expect(before.linkGroups == after.linkGroups)
        #expect(before.linkGroups.count == 2)
        // Holes stay holes.
        #expect(allocatedBytes(restoredRoot + "/sparse.img") < 1 << 20)
        // The directories above the backup path are in the snapshot too, with their metadata.
        var st = stat()
        #expect(lstat(target + s.path, &st) == 0)
    }

    @Test(
        "many small files in many directories (created by the workers in batches) and a large file written through both staging buffers in parts restore identical; check --read-data verifies every blob on every worker count"
    )
    func restoreShapes() throws {
        let s = Scratch("restore-shapes")
        let source = s.sub("source")
        for d in 0..<12 {
            mkdirs(source + "/d\(d)")
            for f in 0..<(d == 0 ? 600 : 40) { write(source + "/d\(d)/f\(f)", randomBytes((d * 977 + f * 131) % 9000, seed: UInt64(d * 1000 + f))) }
            setTimes(source + "/d\(d)", sec: 1_600_000_000 + d, nsec: 17)
        }
        // 70 MiB: three parts of 32 MiB, each several 8 MiB staging flushes, and an unaligned end.
        var large = randomBytes(35 << 20, seed: 9)
        large += Array(String(repeating: "thaw freeze ", count: (35 << 20) / 12).utf8) + [1, 2, 3]
        write(source + "/large.bin", large)
        let (store, target, summary) = try expectRoundTrip(source, in: s)
        #expect(summary.files == 600 + 11 * 40 + 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target + source + "/large.bin")) == Data(large))
        for workers in [1, 3] {
            var checker = Checker(store: store)
            checker.workers = workers
            let report = checker.run(readFraction: 1)
            #expect(report.isClean, "\(report.findings)")
            #expect(report.blobsRead == report.blobs)
        }
    }

    @Test(
        "a chunk several files share, or one file repeats, is read once and written everywhere: a copy, a doubled file, a 48 MiB file of one block eight times (parts on two workers) and two identical directories restore identical, mtimes included"
    )
    func sharedChunks() throws {
        let s = Scratch("restore-shared")
        let source = s.sub("source")
        mkdirs(source + "/copies")
        let block = randomBytes(6 << 20, seed: 61)
        write(source + "/a.bin", block)
        write(source + "/copies/b.bin", block)
        write(source + "/doubled.bin", block + block)
        write(source + "/eight.bin", Array([[UInt8]](repeating: block, count: 8).joined()))
        for (name, second) in [("a.bin", 1), ("copies/b.bin", 2), ("doubled.bin", 3), ("eight.bin", 4)] {
            setTimes(source + "/" + name, sec: 1_700_000_000 + second, nsec: 123_456_789)
        }
        // Two identical directories are one tree, walked (and read ahead) twice.
        for twin in ["twin1", "twin2"] {
            mkdirs(source + "/\(twin)/inner")
            write(source + "/\(twin)/inner/small", Array("the same small file".utf8))
            setTimes(source + "/\(twin)/inner/small", sec: 1_600_000_000, nsec: 0)
            setTimes(source + "/\(twin)/inner", sec: 1_600_000_001, nsec: 0)
        }
        let summary = try expectRoundTrip(source, in: s).summary
        let total = UInt64(12 * block.count + 2 * "the same small file".utf8.count)
        #expect(summary.bytesWritten == total)
        // Only the block's own chunks and those cut across a seam between two copies need reading (about
        // three quarters is reused); two workers that want one chunk at once may each read it.
        #expect(summary.bytesReused >= total / 2, "reused \(summary.bytesReused) of \(total)")
    }

    @Test(
        "with no memory to hold chunks between their uses, a chunk used again is read back from the file it was first restored to: a 40 MiB file (two parts), its copy and a file repeating its first 12 MiB restore identical, the copies mostly from the first file"
    )
    func sharedChunksReadBack() throws {
        let s = Scratch("restore-read-back")
        let source = s.sub("source")
        mkdirs(source + "/later")
        let block = randomBytes(40 << 20, seed: 62)
        write(source + "/a.bin", block)
        write(source + "/later/copy.bin", block)
        write(source + "/later/twice.bin", Array(block[..<(12 << 20)]) + Array(block[..<(12 << 20)]))
        for workers in [1, 2] {
            let run = Scratch("restore-read-back-\(workers)")
            let summary = try expectRoundTrip(source, in: run) {
                $0.sharedChunkBytes = 0
                $0.workers = workers
            }.summary
            #expect(summary.bytesWritten == UInt64(block.count * 2 + (24 << 20)))
            // The copy's and the repeat's chunks are the first file's (but for those cut across the
            // seam in twice.bin); a worker that wants one while it is still being written reads it.
            #expect(summary.bytesReused >= UInt64(block.count / 2), "\(workers) workers: reused \(summary.bytesReused)")
        }
    }

    @Test(
        "restore writes the same bytes onto XFS, btrfs and tmpfs (blocks allocated ahead, O_DIRECT with the ends of each part after it): a 70 MiB file in parts on two workers, files a byte either side of a page, a sparse file and a repeated block",
        .needsRoot, arguments: ["xfs", "btrfs", "tmpfs"])
    func restoreOntoFilesystems(fs: String) throws {
        guard try requireRoot("restoring onto \(fs) (a loop volume or a tmpfs mount)") else { return }
        let s = Scratch("restore-\(fs)")
        let source = s.sub("source")
        mkdirs(source)
        let block = randomBytes(3 << 20, seed: 71)
        write(source + "/large.bin", randomBytes(64 << 20, seed: 73) + block + block + [7])
        write(source + "/page-plus-one", randomBytes((1 << 20) + 4097, seed: 75))
        write(source + "/page-minus-one", randomBytes((1 << 20) + 4095, seed: 77))
        let sparse = open(source + "/sparse.img", O_CREAT | O_WRONLY, 0o600)
        _ = block.withUnsafeBytes { pwrite(sparse, $0.baseAddress, 65536, 10 << 20) }
        #expect(ftruncate(sparse, 24 << 20) == 0)
        close(sparse)
        let store = try Store.initialize(at: s.sub("store"), parameters: ChunkerParameters.default)
        let result = try backup(store, [source])
        #expect(result.errors.isEmpty)

        let target: String
        var volume: LoopVolume?
        if fs == "tmpfs" {
            target = s.sub("tmpfs")
            mkdirs(target)
            #expect(mount("none", target, "tmpfs", 0, "size=200m") == 0, "mount tmpfs: \(String(cString: strerror(errno)))")
        } else {
            volume = try LoopVolume(fs, in: s, sizeMB: 400)
            target = volume!.sub("restore")
        }
        defer { if fs == "tmpfs" { umount(target) } }
        let summary = try restore(store, result.snapshotID, to: target) { $0.workers = 2 }
        #expect(summary.damage.isEmpty)
        #expect(contents(target + source) == contents(source))
        // At most the two chunks the data may straddle (4 MiB each; a store's cut points are its own)
        // are allocated: the all-zero ones are holes.
        #expect(allocatedBytes(target + source + "/sparse.img") <= 9 << 20, "holes stay holes on \(fs)")
        _ = volume
    }

    @Test("a concurrent backup stores exactly what a single worker stores")
    func concurrentEqualsSingle() throws {
        let s = Scratch("workers")
        let source = s.sub("source")
        makeEveryKindTree(at: source)
        for i in 0..<40 { write(source + "/many-\(i)", randomBytes(1000 + i * 3000, seed: UInt64(100 + i))) }
        _ = try expectSameAsOneWorker(source, workers: 4, in: s)
    }

    /// Backs `source` up into two new stores, with one worker and with `workers`, and expects the same
    /// tree of the source, chunks, new chunks and stored bytes. - Returns: the second store and its backup.
    func expectSameAsOneWorker(_ source: String, workers: Int, in s: Scratch) throws -> (Store, BackupResult) {
        let one = try Store.initialize(at: s.sub("one"), parameters: smallChunks, keyed: false)
        let many = try Store.initialize(at: s.sub("many"), parameters: smallChunks, keyed: false)
        let a = try backup(one, [source], workers: 1)
        let b = try backup(many, [source], workers: workers)
        // The trees above the source hold /tmp, which other tests change; compare the source's own tree.
        #expect(try subtree(one, a.record.tree, source) == subtree(many, b.record.tree, source))
        #expect(a.record.summary.chunks == b.record.summary.chunks)
        #expect(a.record.summary.chunksNew == b.record.summary.chunksNew)
        #expect(a.record.summary.bytesStored == b.record.summary.bytesStored)
        return (many, b)
    }

    @Test("large files cut by one reader and hashed by all workers give exactly the single-worker store", arguments: [false, true])
    func largeFilesEqualSingle(mixed: Bool) throws {
        let s = Scratch("large")
        let source = s.sub("source")
        mkdirs(source)
        // Above FileReader.largeFileThreshold (32 MiB): split into batches for every worker.
        write(source + "/huge-1", randomBytes(40 << 20, seed: 77))
        write(source + "/huge-2", randomBytes(33 << 20, seed: 78) + [UInt8](repeating: 0, count: 3 << 20))
        if mixed {
            for i in 0..<60 { write(source + "/small-\(i)", randomBytes(500 + i * 7000, seed: UInt64(900 + i))) }
        }
        let (many, b) = try expectSameAsOneWorker(source, workers: 3, in: s)
        let target = s.sub("restore")
        _ = try restore(many, b.snapshotID, to: target)
        #expect(FileManager.default.contents(atPath: target + source + "/huge-1") == FileManager.default.contents(atPath: source + "/huge-1"))
        #expect(FileManager.default.contents(atPath: target + source + "/huge-2") == FileManager.default.contents(atPath: source + "/huge-2"))
    }

    @Test("backing up the same tree twice adds nothing the second time")
    func secondBackupAddsNothing() throws {
        let b = try EveryKindBackup("dedup")
        let (_, source, store, first) = (b.s, b.source, b.store, b.result)
        #expect(first.record.summary.bytesAdded > 3_000_000)
        // --force: every file is read again (no files cache), and every chunk is found in the index.
        var forced = BackupOptions(paths: [source])
        forced.force = true
        let second = try Backup(store: store, options: forced).run()
        #expect(second.record.summary.bytesAdded == 0)
        #expect(second.record.summary.chunksNew == 0)
        #expect(second.record.summary.bytesRead == first.record.summary.bytesRead)
        #expect(try subtree(store, second.record.tree, source) == subtree(store, first.record.tree, source))
    }

    @Test("bytes inserted in the middle of a file re-use every chunk but those around the insertion")
    func insertionReusesChunks() throws {
        let s = Scratch("insert")
        let source = s.sub("source")
        mkdirs(source)
        let original = randomBytes(4 << 20, seed: 42)
        write(source + "/data", original)
        let store = try Store.initialize(at: s.sub("store"), parameters: smallChunks)
        let first = try backup(store, [source])
        var edited = original
        edited.insert(contentsOf: Array("INSERTED IN THE MIDDLE".utf8), at: 2 << 20)
        write(source + "/data", edited)
        let second = try backup(store, [source])
        // ~256 chunks of ~16 KiB; an insertion changes the chunk it lands in, rarely its neighbour.
        #expect(first.record.summary.chunks > 150)
        #expect(second.record.summary.chunksNew >= 1 && second.record.summary.chunksNew <= 3)
        #expect(second.record.summary.bytesAdded < 3 * UInt64(smallChunks.maxSize))
        let target = s.sub("restore")
        _ = try restore(store, second.snapshotID, to: target)
        #expect(FileManager.default.contents(atPath: target + source + "/data") == Data(edited))
    }

    @Test("restore of a sub-path places it in the target under its own name")
    func subPathRestore() throws {
        let b = try EveryKindBackup("subpath")
        let (s, source, store, result) = (b.s, b.source, b.store, b.result)
        let target = s.sub("restore")
        _ = try restore(store, result.snapshotID, to: target, subPath: source + "/dir/nested")
        #expect(FileManager.default.contents(atPath: target + "/nested/deeper/leaf") == Data(randomBytes(70_000, seed: 2)))
        #expect(throws: RestoreError.self) { try restore(store, result.snapshotID, to: s.sub("other"), subPath: source + "/nope") }
    }

    @Test("several paths share one snapshot; a path inside another is backed up once")
    func severalPaths() throws {
        let s = Scratch("paths")
        mkdirs(s.sub("a/inner"))
        mkdirs(s.sub("b"))
        write(s.sub("a/inner/x"), [1, 2, 3])
        write(s.sub("b/y"), [4, 5])
        let store = try Store.initialize(at: s.sub("store"), parameters: smallChunks)
        let result = try backup(store, [s.sub("a"), s.sub("b"), s.sub("a/inner")])
        #expect(result.record.paths == [s.sub("a"), s.sub("b")])
        #expect(result.record.summary.files == 2)
        _ = try restore(store, "latest", to: s.sub("r"))
        #expect(FileManager.default.contents(atPath: s.sub("r") + s.sub("a/inner/x")) == Data([1, 2, 3]))
        #expect(FileManager.default.contents(atPath: s.sub("r") + s.sub("b/y")) == Data([4, 5]))
    }

    @Test("--one-file-system keeps a mount point as an empty directory; without it the mount is backed up", .needsRoot)
    func oneFileSystem() throws {
        guard try requireRoot("the --one-file-system test (mounts a tmpfs)") else { return }
        let s = Scratch("onefs")
        let source = s.sub("source")
        mkdirs(source + "/mnt")
        write(source + "/local", [1])
        #expect(mount("none", source + "/mnt", "tmpfs", 0, nil) == 0)
        defer { umount(source + "/mnt") }
        write(source + "/mnt/on-tmpfs", [2])
        let store = try Store.initialize(at: s.sub("store"), parameters: smallChunks)
        var o = BackupOptions(paths: [source])
        o.oneFileSystem = true
        let crossed = try backup(store, [source])
        let stayed = try Backup(store: store, options: o).run()
        #expect(crossed.record.summary.files == 2)
        #expect(stayed.record.summary.files == 1)
        _ = try restore(store, stayed.snapshotID, to: s.sub("r"))
        #expect(FileManager.default.fileExists(atPath: s.sub("r") + source + "/mnt"))
        #expect(!FileManager.default.fileExists(atPath: s.sub("r") + source + "/mnt/on-tmpfs"))
    }
}

@Suite("Tree encoding")
struct TreeEncodingTests {
    @Test("the tree writer's JSON decodes to the same tree, odd names and every field included")
    func roundTrip() throws {
        let t = Timestamp(seconds: 1_700_000_000, nanoseconds: 123_456_789)
        var file = Node(
            nameBytes: Array("a \"quoted\"\\name\n\u{1}é".utf8), kind: .file, mode: 0o4755, uid: 7, gid: 8, mtime: t, ctime: t, size: 99, device: 3, inode: 4,
            links: 2)
        file.content = [ChunkID(hashing: [1]), ChunkID(hashing: [2])]
        file.sparse = true
        file.xattrs = [ExtendedAttribute(name: "user.x", value: [0, 255, 10])]
        var link = Node(nameBytes: [0x66, 0xFF], kind: .symlink, mode: 0o777, uid: 0, gid: 0, mtime: t, ctime: t, size: 0, device: 3, inode: 5, links: 1)
        link.linkTarget = [0x74, 0xFE]
        var dir = Node(nameBytes: Array("dir".utf8), kind: .directory, mode: 0o755, uid: 0, gid: 0, mtime: t, ctime: t, size: 0, device: 3, inode: 6, links: 3)
        dir.subtree = ChunkID(hashing: [3])
        var dev = Node(
            nameBytes: Array("null".utf8), kind: .characterDevice, mode: 0o666, uid: 0, gid: 0, mtime: t, ctime: t, size: 0, device: 3, inode: 7, links: 1)
        dev.rdev = 259
        let tree = Tree(nodes: [file, link, dir, dev])
        let bytes = try tree.encoded()
        #expect(try Tree.decode(bytes) == tree)
        #expect(try JSONSerialization.jsonObject(with: Data(bytes)) is [String: Any])
        // Any JSON writer's form of the format reads the same: whitespace, key order, escapes.
        let handWritten =
            #"{ "extra": [1, {"a": null}], "nodes": [ {"type": "file", "name": "caf\u00e9 \ud83d\ude00", "mode": 420, "uid": 1, "gid": 2, "mtime": [-5, 7], "ctime": [0, 0], "size": 0, "device": 0, "inode": 0, "links": 1, "future": true} ] }"#
        let decoded = try Tree.decode(Array(handWritten.utf8))
        #expect(decoded.nodes.first?.name == "café 😀")
        #expect(decoded.nodes.first?.mtime == Timestamp(seconds: -5, nanoseconds: 7))
        #expect(throws: (any Error).self) { try Tree.decode(Array("{\"nodes\": [{\"name\": \"x\"".utf8)) }
    }
}
