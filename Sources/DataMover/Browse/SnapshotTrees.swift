import ChunkStore
import Foundation

/// Finds entries of snapshots by path for the commands that read single files out of a store (`dump`,
/// `mount`): trees are loaded once and kept in a cache bounded by entries, shared by every thread.
public final class SnapshotTrees: @unchecked Sendable {  // cache guarded by `lock`
    /// The store the trees come from.
    public let store: Store
    private let lock = NSLock()
    private var trees: [ChunkID: (tree: Tree, lastUse: UInt64)] = [:]
    private var entries = 0
    private var clock: UInt64 = 0
    /// Entries held across the cached trees (each a few hundred bytes decoded).
    private let capacity: Int

    /// Trees of `store`, at most `capacity` entries of them held at once.
    public init(store: Store, capacity: Int = 200_000) {
        self.store = store
        self.capacity = capacity
    }

    /// A tree, from the cache or the store.
    public func tree(_ id: ChunkID) throws -> Tree {
        if let hit: Tree = lock.withLock({
            clock += 1
            guard let t = trees[id] else { return nil }
            trees[id]!.lastUse = clock
            return t.tree
        }) {
            return hit
        }
        let tree = try store.loadTree(id)
        lock.withLock {
            if trees[id] == nil {
                trees[id] = (tree, clock)
                entries += tree.nodes.count
            }
            // Evict the least recently used trees beyond the bound (never the one just loaded).
            while entries > capacity && trees.count > 1 {
                var oldest: (id: ChunkID, lastUse: UInt64)?
                for (key, value) in trees where key != id && value.lastUse < oldest?.lastUse ?? .max { oldest = (key, value.lastUse) }
                guard let oldest else { break }
                entries -= trees.removeValue(forKey: oldest.id)?.tree.nodes.count ?? 0
            }
        }
        return tree
    }

    /// The entry named `name` in tree `id` (names are sorted by bytes: a binary search).
    public func child(of id: ChunkID, named name: [UInt8]) throws -> Node? {
        let nodes = try tree(id).nodes
        var low = 0, high = nodes.count
        while low < high {
            let mid = (low + high) / 2
            if nodes[mid].nameBytes == name { return nodes[mid] }
            if nodes[mid].nameBytes.lexicographicallyPrecedes(name) { low = mid + 1 } else { high = mid }
        }
        return nil
    }

    /// What a path names in a snapshot whose root tree is `root`.
    public enum Lookup {
        /// The snapshot's root directory (path `/`).
        case root
        case entry(Node)
        /// Nothing of that name: `nearest` is the longest leading part of the path that exists.
        case missing(nearest: String)
    }

    /// Follows `path` (absolute, as backed up; `.` and empty components ignored) from `root`.
    public func lookup(_ path: String, root: ChunkID) throws -> Lookup { try lookup(bytes: Array(path.utf8), root: root) }

    /// Follows a path given as bytes (Linux names need not be UTF-8).
    public func lookup(bytes path: [UInt8], root: ChunkID) throws -> Lookup {
        let components = path.split(separator: UInt8(ascii: "/")).filter { $0.elementsEqual([UInt8(ascii: ".")]) == false }
        var tree = root
        var node: Node?
        var walked: [UInt8] = []
        func nearest() -> String { walked.isEmpty ? "/" : String(decoding: walked, as: UTF8.self) }
        for component in components {
            if let n = node {
                guard let sub = n.subtree else { return .missing(nearest: nearest()) }
                tree = sub
            }
            guard let next = try child(of: tree, named: Array(component)) else { return .missing(nearest: nearest()) }
            node = next
            walked += [UInt8(ascii: "/")] + component
        }
        return node.map { .entry($0) } ?? .root
    }
}
