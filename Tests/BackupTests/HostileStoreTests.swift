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
        bytes.withUnsafeBytes { buffer.free.copyMemory(from: $0) }
        buffer.append(id: id, type: type, codec: .none, storedLength: bytes.count, rawLength: bytes.count)
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
        return try store.saveSnapshot(SnapshotRecord(
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
