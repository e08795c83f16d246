import ChunkStore
import Chunking
import DataMover
import Foundation
import Testing

/// Files of more chunks than a tree holds inline keep their chunk ids in content-list blobs.
@Suite("content lists")
struct ContentListTests {
    /// ~1 KiB chunks, so a 33 MiB file has some 30,000 chunks: two content lists.
    static let tinyChunks = ChunkerParameters(minSize: 256, averageSize: 1024, maxSize: 4096, normalization: 2)

    static func fileNode(_ store: Store, snapshot: String, path: String) throws -> Node {
        var tree = try store.loadTree(try store.loadSnapshot(id: snapshot).tree)
        let parts = path.split(separator: "/")
        for (i, part) in parts.enumerated() {
            let node = try #require(tree.nodes.first { $0.name == part })
            if i == parts.count - 1 { return node }
            tree = try store.loadTree(try #require(node.subtree))
        }
        throw StoreError.snapshotNotFound(path)
    }

    @Test("a large file's ids go to content lists: restore, files cache, check, inspect, prune all follow them")
    func largeFile() throws {
        let scratch = Scratch("lists")
        let source = scratch.sub("source")
        mkdirs(source)
        // Above the large-file threshold (its ids are stored as lists while it is read), and one
        // below it (its lists are cut from the whole list at the end): the lists must be the same cuts.
        var bytes = randomBytes(33 << 20, seed: 77 << 8)
        write(source + "/image", bytes)
        write(source + "/medium", randomBytes(6 << 20, seed: 6 << 8))
        write(source + "/small", randomBytes(100_000, seed: 5 << 8))
        let storePath = scratch.sub("store")
        let store = try Store.initialize(at: storePath, parameters: Self.tinyChunks)
        let first = try backup(store, [source]).snapshotID

        let node = try Self.fileNode(store, snapshot: first, path: source + "/image")
        #expect(node.content == nil)
        let lists = try #require(node.contentLists)
        let ids = try store.content(of: node)
        #expect(ids.count > ContentList.idsPerBlob && ids.count > ContentList.inlineLimit)
        func expectedLists(_ ids: [ChunkID]) -> [ChunkID] {
            stride(from: 0, to: ids.count, by: ContentList.idsPerBlob).map {
                ChunkID(hashing: ContentList.encode(ids[$0..<min($0 + ContentList.idsPerBlob, ids.count)]))
            }
        }
        #expect(lists.count >= 2 && lists == expectedLists(ids))
        let medium = try Self.fileNode(store, snapshot: first, path: source + "/medium")
        #expect(try medium.contentLists == expectedLists(store.content(of: medium)) && medium.contentLists?.count == 1)
        #expect(store.index.lookup(lists[0])?.entry.type == .contentList)
        let total = try ids.reduce(0) { $0 + Int(try #require(store.index.lookup($1)).entry.rawLength) }
        #expect(total == bytes.count)
        #expect(try Self.fileNode(store, snapshot: first, path: source + "/small").content != nil, "small files stay inline")
        // The tree stays small: its JSON holds list ids, not ~24,000 chunk ids.
        let treeBytes = try store.loadBlob(try store.loadTree(try store.loadSnapshot(id: first).tree).nodes[0].subtree!)
        #expect(treeBytes.count < 64 << 10)

        // Restore.
        #expect(try restore(store, first, to: scratch.sub("r1")).files == 3)
        #expect(FileManager.default.contents(atPath: scratch.sub("r1") + source + "/image") == Data(bytes))

        // Files cache: unchanged, the next snapshot names the same lists without reading the file.
        let second = try backup(store, [source])
        #expect(second.record.summary.filesUnchanged == 3)
        #expect(try Self.fileNode(store, snapshot: second.snapshotID, path: source + "/image").contentLists == lists)

        // A change in the middle: new lists, and restore gives the new bytes.
        for i in (12 << 20)..<((12 << 20) + 5000) { bytes[i] ^= 0x5A }
        write(source + "/image", bytes)
        let third = try backup(store, [source]).snapshotID
        let changed = try Self.fileNode(store, snapshot: third, path: source + "/image")
        #expect(changed.contentLists != lists)
        #expect(try restore(store, third, to: scratch.sub("r3")).files == 3)
        #expect(FileManager.default.contents(atPath: scratch.sub("r3") + source + "/image") == Data(bytes))

        // check reads through the lists; inspect chunk finds the file from a chunk inside a list;
        // inspect cat content-list prints the ids; inspect diff sees the change.
        #expect(try CLI.run(["check", "--read-data", "--store", storePath]).code == 0)
        let chunk = try CLI.run(["inspect", "chunk", ids[ContentList.idsPerBlob + 10].hex, "--store", storePath])
        #expect(chunk.stdout.contains("\(first.prefix(8)):\(source)/image"), "\(chunk.stdout)")
        let cat = try CLI.run(["inspect", "cat", "content-list", lists[0].hex, "--store", storePath])
        #expect(cat.stdout.split(separator: "\n").map(String.init) == ids.prefix(ContentList.idsPerBlob).map(\.hex))
        let diff = try CLI.run(["inspect", "diff", first, third, "--store", storePath])
        #expect(diff.stdout.contains("\(source)/image"), "\(diff.stdout)")

        // Prune after forgetting the first two: the third's lists and chunks stay, the rest go.
        try store.deleteSnapshot(id: first)
        try store.deleteSnapshot(id: second.snapshotID)
        #expect(try CLI.run(["prune", "--store", storePath]).code == 0)
        #expect(try CLI.run(["check", "--read-data", "--store", storePath]).code == 0)
        let pruned = try Store(path: storePath)
        #expect(pruned.index.lookup(lists[0]) == nil || changed.contentLists!.contains(lists[0]))
        #expect(try restore(pruned, third, to: scratch.sub("r4")).files == 3)
        #expect(FileManager.default.contents(atPath: scratch.sub("r4") + source + "/image") == Data(bytes))
    }

    @Test("a damaged content list is named by check with the file it belongs to")
    func damagedList() throws {
        let scratch = Scratch("lists-damage")
        let source = scratch.sub("source")
        mkdirs(source)
        write(source + "/image", randomBytes(6 << 20, seed: 91 << 8))
        let storePath = scratch.sub("store")
        let store = try Store.initialize(at: storePath, parameters: Self.tinyChunks)
        let snapshot = try backup(store, [source]).snapshotID
        let list = try #require(try Self.fileNode(store, snapshot: snapshot, path: source + "/image").contentLists?.first)
        let location = try #require(store.index.lookup(list))
        flipByte(store.packPath(location.pack), at: Int(location.entry.offset) + 100)
        let check = try CLI.run(["check", "--store", storePath])
        #expect(check.code != 0)
        #expect(check.stdout.contains("blob \(list)"), "\(check.stdout)")
        #expect(check.stdout.contains("\(source)/image"), "\(check.stdout)")
        let prune = try CLI.run(["prune", "--store", storePath])
        #expect(prune.code != 0, "prune must not guess which chunks a damaged list held")
        #expect(prune.stderr.contains("refusing to prune"), "\(prune.stderr)")
    }
}
