import ChunkStore
import Foundation

/// The tree saver: a directory whose tree is being assembled while its files are still being read by
/// workers.
///
/// Children complete in any order and on any thread; the last one to complete (or the scanner, when it
/// has listed everything) encodes the tree, stores it, and completes this directory in its parent. So
/// a finished subtree is written and freed at once: memory holds only directories still in progress.
final class TreeSaver: @unchecked Sendable {  // state guarded by `lock`
    private let lock = NSLock()
    private var node: Node?
    private let parent: TreeSaver?
    private let slot: Int
    private var children: [Node?] = []
    /// Children not yet complete, plus one while the scanner is still listing.
    private var pending = 1
    /// Called with the root tree id when the root completes.
    private let onRootComplete: (@Sendable (ChunkID) -> Void)?

    init(node: Node?, parent: TreeSaver?, slot: Int, onRootComplete: (@Sendable (ChunkID) -> Void)? = nil) {
        self.node = node
        self.parent = parent
        self.slot = slot
        self.onRootComplete = onRootComplete
    }

    /// Makes room for `count` children; call once, before completing any.
    func expect(_ count: Int) {
        lock.withLock {
            children = Array(repeating: nil, count: count)
            pending += count
        }
    }

    /// Records child `slot` (nil: left out, e.g. unreadable) and finishes the directory if it was the last.
    func complete(slot: Int, with child: Node?, saver: ChunkSaver) throws {
        let done: Bool = lock.withLock {
            children[slot] = child
            pending -= 1
            return pending == 0
        }
        if done { try finish(saver: saver) }
    }

    /// The scanner has listed every child.
    func sealed(saver: ChunkSaver) throws {
        let done: Bool = lock.withLock {
            pending -= 1
            return pending == 0
        }
        if done { try finish(saver: saver) }
    }

    private func finish(saver: ChunkSaver) throws {
        let tree = Tree(nodes: children.compactMap { $0 })
        children = []
        let id = try saver.save(tree)
        if let parent {
            var node = self.node!
            node.subtree = id
            try parent.complete(slot: slot, with: node, saver: saver)
        } else {
            onRootComplete?(id)
        }
    }
}
