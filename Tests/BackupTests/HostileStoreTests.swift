import ChunkStore
import Foundation
import Testing

/// A store whose trees are written by hand, the way an attacker holding the store would write them:
/// the trees are stored as given, without the sorting and checks a backup applies.
final class CraftedStore {
    let scratch: Scratch
    let path: String
    let store: Store
    private let packs: PackWriter
    static let now = Timestamp(seconds: 1_700_000_000, nanoseconds: 0)

    init(_ label: String = "crafted") throws {
        scratch = Scratch(label)
        path = scratch.sub("store")
        store = try Store.initialize(at: path, parameters: smallChunks)
        packs = store.makePackWriter()
    }

    private func put(_ bytes: [UInt8], type: BlobType) throws -> ChunkID {
        let id = ChunkID(hashing: bytes)
        guard store.index.claim(id) else { return id }
        let buffer = try packs.checkout(room: bytes.count)
        buffer.append(id: id, type: type, rawLength: bytes.count) { free in
            bytes.withUnsafeBytes { free.copyMemory(from: $0) }
            return (.none, bytes.count)
        }
        try packs.checkin(buffer)
        return id
    }

    /// Stores `nodes` as one tree, in exactly this order.
    func tree(_ nodes: [Node]) throws -> ChunkID {
        var tree = Tree(nodes: [])
        tree.nodes = nodes
        return try put(try tree.encoded(), type: .tree)
    }

    func file(_ name: String, _ content: [UInt8], inode: UInt64 = 10) throws -> Node {
        var node = Self.node(name, .file, inode: inode)
        node.size = UInt64(content.count)
        node.content = content.isEmpty ? [] : [try put(content, type: .data)]
        return node
    }

    func symlink(_ name: String, to target: String) -> Node {
        var node = Self.node(name, .symlink, inode: 11)
        node.linkTarget = Array(target.utf8)
        return node
    }

    func directory(_ name: String, _ nodes: [Node]) throws -> Node {
        var node = Self.node(name, .directory, inode: 12)
        node.mode = 0o755
        node.subtree = try tree(nodes)
        return node
    }

    static func node(_ name: String, _ kind: Node.Kind, inode: UInt64) -> Node {
        Node(nameBytes: Array(name.utf8), kind: kind, mode: 0o644, uid: 0, gid: 0, mtime: now, ctime: now, size: 0, device: 1, inode: inode, links: 1)
    }

    /// Commits the packs and writes a snapshot whose root tree holds `nodes` (as given).
    func snapshot(_ nodes: [Node]) throws -> String {
        let root = try tree(nodes)
        try packs.commit()
        return try store.saveSnapshot(
            SnapshotRecord(
                time: Date(), hostname: "h", username: "u", paths: ["/"], tree: root, tags: [], programVersion: "crafted", summary: BackupSummary()))
    }

    func cli(_ args: [String]) throws -> CLI.Result { try CLI.run(args + ["--store", path]) }
}

/// A directory beside a restore's target, with a file the attack aims at, and a fingerprint of
/// everything in it: a restore that writes outside its target changes the fingerprint.
struct Sentinel {
    let path: String
    init(in scratch: Scratch) {
        path = scratch.sub("sentinel")
        mkdirs(path)
        write(path + "/victim", Array("untouched\n".utf8))
    }

    var fingerprint: [String: String] {
        TreeSnapshot(path).entries.mapValues { "\($0) \(ChunkID(hashing: $0.content ?? []).hex)" }
    }
}

@Suite("Hostile stores")
struct HostileStoreTests {
    enum Kind: String, CaseIterable { case file, symlink, directory }

    func entry(_ kind: Kind, _ crafted: CraftedStore, sentinel: Sentinel) throws -> Node {
        switch kind {
        case .file: try crafted.file("zz", Array("attacker's bytes\n".utf8))
        case .symlink: crafted.symlink("zz", to: sentinel.path + "/victim")
        case .directory: try crafted.directory("zz", [try crafted.file("victim", Array("through a directory\n".utf8))])
        }
    }

    @Test(
        "two entries of one name never write outside the target, in any order, with or without --overwrite",
        arguments: Kind.allCases.flatMap { a in Kind.allCases.map { b in (a, b) } }, [false, true])
    func duplicateNames(kinds: (Kind, Kind), overwrite: Bool) throws {
        let crafted = try CraftedStore("dup")
        let sentinel = Sentinel(in: crafted.scratch)
        let before = sentinel.fingerprint
        let id = try crafted.snapshot([try entry(kinds.0, crafted, sentinel: sentinel), try entry(kinds.1, crafted, sentinel: sentinel)])
        let target = crafted.scratch.sub("target")
        let r = try crafted.cli(["restore", id, "-t", target] + (overwrite ? ["--overwrite"] : []))
        #expect(r.code == 1, "\(r.stderr)")
        #expect(r.stderr.contains("\"zz\" appears twice"), "\(r.stderr)")
        #expect(r.stderr.contains("tree "), "the damaged tree is named: \(r.stderr)")
        #expect(sentinel.fingerprint == before)
        #expect(storeListing(target).isEmpty)
        // check names the same tree.
        let check = try crafted.cli(["check"])
        #expect(check.code == 1)
        #expect(check.stdout.contains("appears twice") || check.stderr.contains("appears twice"), "\(check.stdout)\(check.stderr)")
    }

    @Test("a config with a format version below 1 is refused, naming the file")
    func negativeVersion() throws {
        let crafted = try CraftedStore("version")
        let config = crafted.path + "/config"
        chmod(config, 0o644)
        let text = String(decoding: StoreSurgery.read(config), as: UTF8.self).replacingOccurrences(of: "\"version\":2", with: "\"version\":-1")
        write(config, Array(text.utf8))
        let r = try crafted.cli(["snapshots"])
        #expect(r.code == 1)
        #expect(r.stderr.contains("config") && r.stderr.contains("version -1 does not exist"), "\(r.stderr)")
    }

    @Test("one changed digit of the gear seed is refused by its checksum, not silently used")
    func changedSeed() throws {
        let crafted = try CraftedStore("seed")
        let config = crafted.path + "/config"
        chmod(config, 0o644)
        var text = String(decoding: StoreSurgery.read(config), as: UTF8.self)
        let seed = try #require(text.range(of: #""gearSeed":""#))
        let digit = text.index(seed.upperBound, offsetBy: 5)
        text.replaceSubrange(digit...digit, with: text[digit] == "0" ? "1" : "0")
        write(config, Array(text.utf8))
        for command in [["check"], ["snapshots"]] {
            let r = try crafted.cli(command)
            #expect(r.code == 1)
            #expect(r.stderr.contains("config") && r.stderr.contains("checksum does not match"), "\(r.stderr)")
        }
    }

    @Test("entries out of order are damage, named with their tree")
    func unsortedNames() throws {
        let crafted = try CraftedStore("unsorted")
        let id = try crafted.snapshot([try crafted.file("b", [1]), try crafted.file("a", [2])])
        let r = try crafted.cli(["restore", id, "-t", crafted.scratch.sub("target")])
        #expect(r.code == 1)
        #expect(r.stderr.contains("\"a\" is out of order"), "\(r.stderr)")
    }

    @Test("--overwrite replaces a symlink in the target instead of writing through it")
    func overwriteDoesNotFollow() throws {
        let crafted = try CraftedStore("overwrite")
        let sentinel = Sentinel(in: crafted.scratch)
        let before = sentinel.fingerprint
        let id = try crafted.snapshot([
            try crafted.directory("d", [try crafted.file("victim", Array("new\n".utf8))]),
            try crafted.file("zz", Array("new\n".utf8)),
        ])
        let target = crafted.scratch.sub("target")
        mkdirs(target)
        // The target already holds symlinks where the snapshot has a file and a directory.
        symlink(sentinel.path + "/victim", target + "/zz")
        symlink(sentinel.path, target + "/d")
        #expect(try crafted.cli(["restore", id, "-t", target]).code == 1, "a non-empty target needs --overwrite")
        let r = try crafted.cli(["restore", id, "-t", target, "--overwrite"])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(sentinel.fingerprint == before)
        let restored = TreeSnapshot(target)
        #expect(restored.entries["zz"]?.kind == S_IFREG)
        #expect(restored.entries["d"]?.kind == S_IFDIR)
        #expect(restored.entries["d/victim"]?.content == Array("new\n".utf8))
    }

    @Test("a symlink to a directory in the snapshot is restored as a link, and nothing is created through it")
    func symlinkThenDirectoryContents() throws {
        // A legitimate-looking layout: `link` → the sentinel, and a directory `real`. Restore makes the
        // link as a link; the directory's contents land in the target only.
        let crafted = try CraftedStore("linkdir")
        let sentinel = Sentinel(in: crafted.scratch)
        let before = sentinel.fingerprint
        let id = try crafted.snapshot([
            crafted.symlink("link", to: sentinel.path),
            try crafted.directory("real", [try crafted.file("victim", [9, 9])]),
        ])
        let target = crafted.scratch.sub("target")
        let r = try crafted.cli(["restore", id, "-t", target])
        #expect(r.code == 0, "\(r.stderr)")
        #expect(sentinel.fingerprint == before)
        #expect(TreeSnapshot(target).entries["link"]?.link == sentinel.path)
    }
}

// MARK: Length fields

/// Byte-level edits of a store's objects, each left self-consistent (checksums and names fixed) so
/// that only the lie in a length field is left to catch.
enum StoreSurgery {
    static func read(_ path: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path) ?? Data()) }

    static func setLE32(_ bytes: inout [UInt8], at offset: Int, _ value: UInt32) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
    }

    static func le32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
    }

    /// The store's only index segment: its path and bytes.
    static func segment(_ store: String) throws -> String {
        let names = try FileManager.default.contentsOfDirectory(atPath: store + "/index")
        try #require(names.count == 1)
        return store + "/index/" + names[0]
    }

    /// Rewrites the index segment with `edit` applied and names it by its new hash, as a writer would.
    static func editSegment(_ store: String, _ edit: (inout [UInt8]) -> Void) throws {
        let path = try segment(store)
        var bytes = read(path)
        edit(&bytes)
        try FileManager.default.removeItem(atPath: path)
        write(store + "/index/" + ChunkID(hashing: bytes).hex, bytes)
    }

    /// The offset of `id`'s entry in an index segment's bytes (layout in docs/FORMAT.md).
    static func segmentEntry(_ bytes: [UInt8], _ id: ChunkID) -> Int {
        let packs = Int(le32(bytes, at: 8)), count = Int(le32(bytes, at: 12))
        let start = 16 + packs * 32
        return (0..<count).map { start + $0 * 52 }.first { Array(bytes[$0..<$0 + 32]) == id.bytes }!
    }

    /// The pack holding `id` and the offset of its trailer entry.
    static func packEntry(_ store: Store, _ id: ChunkID) throws -> (path: String, entry: Int) {
        let location = try #require(store.index.lookup(id))
        let path = store.packPath(location.pack)
        let bytes = read(path)
        let count = Int(le32(bytes, at: bytes.count - 16))
        let start = bytes.count - 16 - count * 48
        let entry = try #require((0..<count).map { start + $0 * 48 }.first { Array(bytes[$0..<$0 + 32]) == id.bytes })
        return (path, entry)
    }

    /// Rewrites a pack with `edit` applied and its trailer checksum made to match again.
    static func editPack(_ path: String, _ edit: (inout [UInt8]) -> Void) {
        var bytes = read(path)
        let count = Int(le32(bytes, at: bytes.count - 16))
        let start = bytes.count - 16 - count * 48
        edit(&bytes)
        setLE32(&bytes, at: bytes.count - 12, crc32(bytes[start..<(bytes.count - 16)]))
        chmod(path, 0o644)
        write(path, bytes)
    }

    static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}

/// Runs the CLI under /usr/bin/time and returns its result and peak resident memory.
func measured(_ args: [String]) throws -> (result: CLI.Result, peakBytes: Int) {
    let scratch = Scratch("rss")
    let report = scratch.sub("rss")
    let result = try CLI.run(args, prefix: ["/usr/bin/time", "-f", "%M", "-o", report])
    let kb = Int(String(decoding: StoreSurgery.read(report), as: UTF8.self).split(separator: "\n").last ?? "") ?? Int.max
    return (result, kb * 1024)
}

@Suite("Hostile stores: length fields")
struct LengthFieldTests {
    /// What a lying field may cost: well below the gigabytes a trusted 32-bit length would allocate.
    static let memoryCeiling = 200 << 20

    struct Lie: CustomStringConvertible, Sendable {
        var description: String
        var expected: String
        /// Restore reads through the index: a lie only the pack's trailer tells is check's to find.
        var restoreAffected = true
        var apply: @Sendable (Fixture, ChunkID) throws -> Void
    }

    static let entryField: [(name: String, offset: Int)] = [("offset", 36), ("stored length", 40), ("raw length", 44)]

    static let lies: [Lie] = {
        var lies: [Lie] = []
        // An index entry of the first chunk of `a`: each length field at 0, at the maximum, and just
        // past what its container allows.
        for (field, at) in entryField {
            for label in ["0", "max", "just past"] {
                if field == "offset" && label == "0" { continue }  // offset 0 is where the first blob lives
                lies.append(
                    Lie(description: "index entry \(field) = \(label)", expected: "blob") { f, id in
                        let location = try #require(f.store.index.lookup(id))
                        let packSize = UInt32(StoreSurgery.read(f.store.packPath(location.pack)).count)
                        let value: UInt32 =
                            switch (label, field) {
                            case ("0", _): 0
                            case ("max", _): .max
                            case (_, "offset"): packSize
                            case (_, "stored length"): packSize - 1
                            default: UInt32(smallChunks.maxSize + 1)
                            }
                        try StoreSurgery.editSegment(f.storePath) { bytes in
                            StoreSurgery.setLE32(&bytes, at: StoreSurgery.segmentEntry(bytes, id) + at, value)
                        }
                    })
            }
        }
        // The segment header's counts.
        for (field, at) in [("pack count", 8), ("entry count", 12)] {
            for (label, value) in [("0", UInt32(0)), ("max", UInt32.max), ("just past", UInt32(1))] {
                lies.append(
                    Lie(description: "index header \(field) = \(label)", expected: "index segment") { f, _ in
                        try StoreSurgery.editSegment(f.storePath) { bytes in
                            let v = label == "just past" ? StoreSurgery.le32(bytes, at: at) + 1 : value
                            StoreSurgery.setLE32(&bytes, at: at, v)
                        }
                    })
            }
        }
        // A pack trailer entry (checksum fixed), then the index rebuilt from the packs by `repair index`.
        for (field, at) in [("offset", 32), ("stored length", 36), ("raw length", 40)] {
            for label in ["max", "just past"] {
                lies.append(
                    Lie(description: "pack trailer \(field) = \(label), index repaired from it", expected: "") { f, id in
                        let (path, entry) = try StoreSurgery.packEntry(f.store, id)
                        StoreSurgery.editPack(path) { bytes in
                            let old = StoreSurgery.le32(bytes, at: entry + at)
                            let v: UInt32 = label == "max" ? .max : field == "raw length" ? UInt32(smallChunks.maxSize + 1) : old &+ UInt32(bytes.count)
                            StoreSurgery.setLE32(&bytes, at: entry + at, v)
                        }
                        _ = try f.cli(["repair", "index"])
                    })
            }
        }
        // The pack footer's entry count.
        for label in ["0", "max"] {
            lies.append(
                Lie(description: "pack footer count = \(label)", expected: "pack", restoreAffected: false) { f, id in
                    let (path, _) = try StoreSurgery.packEntry(f.store, id)
                    StoreSurgery.editPack(path) { bytes in StoreSurgery.setLE32(&bytes, at: bytes.count - 16, label == "0" ? 0 : .max) }
                })
        }
        // Files whose whole length is the field.
        lies.append(
            Lie(description: "a snapshot record past its limit", expected: "snapshot record") { f, _ in
                let path = f.storePath + "/snapshots/" + f.snapshot
                chmod(path, 0o644)
                truncate(path, off_t(SnapshotRecord.maximumLength + 1))
            })
        lies.append(
            Lie(description: "a config past its limit", expected: "config") { f, _ in
                chmod(f.storePath + "/config", 0o644)
                truncate(f.storePath + "/config", off_t(StoreConfig.maximumLength + 1))
            })
        return lies
    }()

    @Test("a lying length is damage, named, in bounded memory", arguments: lies)
    func lyingLength(lie: Lie) throws {
        let f = try Fixture()
        let id = try f.node("a").content![0]
        try lie.apply(f, id)
        let restore = ["restore", f.snapshot, "-t", f.scratch.sub("target")]
        for command in [["check", "--read-data"]] + (lie.restoreAffected ? [restore] : []) {
            let (r, peak) = try measured(command + ["--store", f.storePath])
            let output = r.stdout + r.stderr
            #expect(r.code == 1, "\(command[0]) after \(lie): \(output)")
            #expect(peak < Self.memoryCeiling, "\(command[0]) after \(lie) peaked at \(peak >> 20) MiB")
            #expect(output.contains("damaged") || output.contains("not in the store's index"), "\(command[0]) after \(lie): \(output)")
            if !lie.expected.isEmpty { #expect(output.contains(lie.expected), "\(command[0]) after \(lie): \(output)") }
            #expect(!output.contains("Fatal error"), "\(output)")
        }
    }
}

@Suite("Restore without root")
struct UnprivilegedRestoreTests {
    @Test("restoring as another user leaves setuid/setgid bits off the files it cannot give their owners, and says so once", .needsRoot)
    func setIDBitsStripped() throws {
        guard try requireRoot("a restore as user nobody") else { return }
        let s = Scratch("setuid")
        let source = s.sub("source")
        mkdirs(source)
        write(source + "/tool", Array("#!/bin/sh\n".utf8))
        write(source + "/group-tool", Array("#!/bin/sh\n".utf8))
        write(source + "/plain", Array("data".utf8))
        chmod(source + "/tool", 0o4755)
        chmod(source + "/group-tool", 0o2755)
        let store = s.sub("store")
        #expect(try CLI.run(["init", "--store", store]).code == 0)
        #expect(try CLI.run(["backup", "--store", store, source]).code == 0)
        let plainMode = TreeSnapshot(source).entries["plain"]?.mode
        // nobody may read the store and write its locks and the target; nothing else.
        #expect(try Shell.run(["chmod", "-R", "a+rwX", store, s.path]).code == 0)
        let target = s.sub("target")
        let r = try CLI.run(
            ["restore", "latest", "--store", store, "--target", target], prefix: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        #expect(r.code == 0, "\(r.stderr)")
        let restored = TreeSnapshot(target + source)
        #expect(restored.entries["tool"]?.mode == 0o755)
        #expect(restored.entries["group-tool"]?.mode == 0o755)
        #expect(restored.entries["plain"]?.mode == plainMode)
        #expect(r.stderr.components(separatedBy: "setuid/setgid bits were left off 2 file(s)").count == 2, "one warning: \(r.stderr)")
        // As root the bits stay.
        let asRoot = s.sub("target-root")
        #expect(try CLI.run(["restore", "latest", "--store", store, "--target", asRoot]).code == 0)
        #expect(TreeSnapshot(asRoot + source).entries["tool"]?.mode == 0o4755)
    }
}

@Suite("Hostile stores: sizes")
struct SizeTests {
    @Test("a file whose declared size differs from its chunks is damage for check and restore, not a sparse terabyte", arguments: [UInt64(1) << 40, 3, 0])
    func lyingSize(size: UInt64) throws {
        let crafted = try CraftedStore("size")
        var liar = try crafted.file("liar", Array("ten bytes!".utf8))
        liar.size = size
        let id = try crafted.snapshot([try crafted.file("honest", Array("fine".utf8)), liar])
        let target = crafted.scratch.sub("target")
        let r = try crafted.cli(["restore", id, "-t", target])
        #expect(r.code == 1)
        #expect(r.stderr.contains("liar") && r.stderr.contains("its size is \(size) bytes but its 1 chunk(s) hold 10"), "\(r.stderr)")
        #expect(storeListing(target).isEmpty)
        let skipped = try crafted.cli(["restore", id, "-t", crafted.scratch.sub("skip"), "--skip-damaged"])
        #expect(skipped.code == 3)
        #expect(TreeSnapshot(crafted.scratch.sub("skip")).entries.keys.sorted() == ["honest"])
        let check = try crafted.cli(["check"])
        #expect(check.code == 1)
        #expect(check.stdout.contains("/liar") && check.stdout.contains("its size is \(size) bytes"), "\(check.stdout)")
    }
}

@Suite("Hostile stores: repair")
struct RepairTests {
    @Test("repair index --read-data leaves out a trailer entry that lies about its blob, and names it")
    func lyingTrailerEntry() throws {
        let f = try Fixture()
        let id = try f.node("b").content![0]
        let (path, entry) = try StoreSurgery.packEntry(f.store, id)
        StoreSurgery.editPack(path) { bytes in bytes[entry] ^= 0xFF }  // the id no longer names these bytes
        let verified = try f.cli(["repair", "index", "--read-data"])
        #expect(verified.code == 1)
        #expect(verified.stderr.contains("content does not match its SHA-256"), "\(verified.stderr)")
        let store = try Store(path: f.storePath)
        var forged = id.bytes
        forged[0] ^= 0xFF
        let forgedID = forged.withUnsafeBytes { ChunkID(bytes: $0) }
        #expect(store.index.lookup(forgedID) == nil, "the lying entry was not indexed")
        #expect(store.index.lookup(try f.node("a").content![0]) != nil, "the rest was")
        // Restore names what is now missing, and restores the rest with --skip-damaged.
        let r = try f.cli(["restore", f.snapshot, "-t", f.scratch.sub("t"), "--skip-damaged"])
        #expect(r.code == 3)
        #expect(r.stderr.contains(id.hex), "\(r.stderr)")
    }
}
