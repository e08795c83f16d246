import ChunkStore
import Foundation

/// Writes part of a snapshot out without restoring it (`dump`): one file's bytes as they are, or a
/// directory (or the whole snapshot) as an archive. Every chunk is verified before it is written.
public final class SnapshotDump {
    /// The snapshot's trees, by path.
    public let trees: SnapshotTrees
    /// Chunks read for the files written.
    public let cache: ChunkCache
    /// Entries the archive format could not hold, left out.
    public private(set) var skipped: [String] = []
    /// Entries written.
    public private(set) var entries = 0

    /// A dump from `store`, with its own tree and chunk caches.
    public init(store: Store) {
        trees = SnapshotTrees(store: store)
        cache = ChunkCache(store: store)
    }

    /// Writes a file's content.
    public func writeContent(of node: Node, path: String, _ write: (UnsafeRawBufferPointer) throws -> Void) throws {
        let file: StoredFile
        do { file = try StoredFile(node, cache: cache) } catch { throw Damaged(path: path, reason: "\(error)") }
        file.readAheadChunks = 8
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: UInt64 = 0
        while offset < file.size {
            let n: Int
            do { n = try buffer.withUnsafeMutableBytes { try file.read(at: offset, into: $0) } } catch {
                throw Damaged(path: path, reason: "\(error)")
            }
            guard n > 0 else { break }
            try buffer.withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            offset += UInt64(n)
        }
    }

    /// Writes `node` (nil: the snapshot's root tree `root`, whose entries go in at the top) and everything
    /// below it into `archive`, named `name` (relative) and below.
    public func archive(_ node: Node?, name: [UInt8], root: ChunkID, path: String, into archive: ArchiveWriter) throws {
        var links: [Identity: [UInt8]] = [:]
        func add(_ node: Node, _ name: [UInt8], _ path: String, depth: Int) throws {
            guard depth <= Tree.maximumDepth else { throw Damaged(path: path, reason: "nested deeper than \(Tree.maximumDepth) directories") }
            guard archive.canHold(node.kind) else {
                skipped.append("\(path) (a \(node.kind.rawValue))")
                return
            }
            var linkTo: [UInt8]?
            if node.kind == .file && node.links > 1 {
                let identity = Identity(device: node.device, inode: node.inode)
                if let first = links[identity], archive is TarWriter { linkTo = first } else { links[identity] = name }
            }
            let content: ((_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void)? =
                node.kind == .file && linkTo == nil ? { write in try self.writeContent(of: node, path: path, write) } : nil
            try archive.add(path: name, node: node, hardLinkTo: linkTo, content: content)
            entries += 1
            if let sub = node.subtree { try children(sub, name + [UInt8(ascii: "/")], path, depth: depth + 1) }
        }
        func children(_ tree: ChunkID, _ prefix: [UInt8], _ path: String, depth: Int) throws {
            let nodes: [Node]
            do { nodes = try trees.tree(tree).nodes } catch { throw Damaged(path: path.isEmpty ? "/" : path, reason: "\(error)") }
            for child in nodes { try add(child, prefix + child.nameBytes, path + "/" + child.name, depth: depth) }
        }
        if let node { try add(node, name, path, depth: 0) } else { try children(root, [], "", depth: 0) }
        try archive.finish()
    }

    struct Identity: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    /// Data of one path could not be read.
    public struct Damaged: Error, CustomStringConvertible {
        /// The path in the snapshot.
        public var path: String
        /// What was wrong with its data.
        public var reason: String
        /// "PATH: REASON".
        public var description: String { "\(path): \(reason)" }
    }
}
