import ChunkStore
import Foundation

/// The files cache: a file whose device, inode, size, mtime and ctime are those it had in the parent
/// snapshot (the one named, or the latest of the same paths and host) is not read again; its node
/// takes the parent's chunk ids, as long as the store still has every blob they name.
struct FilesCache {
    let store: Store
    let options: BackupOptions
    /// A writer's file (a database written while it is backed up) whose ctime is at or after this moment
    /// may have changed after the parent snapshot read it, within one tick of the file system's clock,
    /// with metadata that cannot tell: the files cache does not trust it (git's "racily clean" files).
    /// Set by `parentRoot`, before the scan.
    private(set) var racyFrom: Timestamp?
    /// How coarse file timestamps may be, in seconds: Linux stamps files from a clock that ticks every
    /// few milliseconds, and some filesystems keep whole seconds only.
    static let timestampGranularity: Int64 = 1

    init(store: Store, options: BackupOptions) {
        self.store = store
        self.options = options
    }

    /// The root tree of the parent snapshot: the one named, or the latest with the same paths and host.
    mutating func parentRoot(_ paths: [PathBytes]) -> ParentTree? {
        guard !options.force else { return nil }
        let record: SnapshotRecord?
        if let name = options.parent {
            record = try? store.resolveSnapshot(name).record
        } else {
            let wanted = paths.map(\.description)
            record = (try? store.snapshots().records)?.last { $0.record.paths == wanted && $0.record.hostname == options.hostname }?.record
        }
        guard let record, let tree = try? store.loadTree(record.tree) else { return nil }
        let started = Timestamp(record.time)
        racyFrom = Timestamp(seconds: started.seconds - Self.timestampGranularity, nanoseconds: started.nanoseconds)
        return ParentTree(tree)
    }

    /// The parent's directory matching `node`, when there is one.
    func subtree(of node: Node?) -> ParentTree? {
        guard !options.force, let id = node?.subtree, let tree = try? store.loadTree(id) else { return nil }
        return ParentTree(tree)
    }

    /// The parent's content (chunk ids, or content lists) for a file that has not changed, if every
    /// blob it names is still in the store.
    func unchangedContent(_ node: Node, _ parent: Node?, path: PathBytes) -> (content: [ChunkID]?, contentLists: [ChunkID]?)? {
        guard let parent, parent.kind == .file, parent.content != nil || parent.contentLists != nil, parent.device == node.device,
            parent.inode == node.inode, parent.size == node.size, parent.mtime == node.mtime, parent.ctime == node.ctime
        else { return nil }
        // A writer's file changed in the same clock tick as the parent read it? Its metadata cannot tell:
        // read it again. (Other files are not written during a backup; their metadata is trusted.)
        if let racyFrom, !(node.ctime < racyFrom), options.source.isComponentFile(path.description) { return nil }
        for id in (parent.content ?? []) + (parent.contentLists ?? []) where !store.index.contains(id) { return nil }
        return (parent.content, parent.contentLists)
    }
}

/// A directory of the parent snapshot, by name.
struct ParentTree {
    private let byName: [[UInt8]: Node]
    init(_ tree: Tree) { byName = Dictionary(tree.nodes.map { ($0.nameBytes, $0) }, uniquingKeysWith: { a, _ in a }) }
    func node(_ name: [UInt8]) -> Node? { byName[name] }
}
