import Foundation

/// Loads the trees a depth-first walk will want next on threads of its own, so that walking a snapshot
/// of many directories (restore's plan) is not one core reading, decrypting, verifying and decoding
/// one tree at a time while the others wait. The walker asks for each tree with `tree(_:)`, which
/// returns it loaded — or loads it on the spot when no thread has started on it — and queues the
/// tree's subtrees, first one on top, as a depth-first walk wants them. At most `window` trees are
/// loaded or loading ahead of the walk; a tree's error is the walker's, for that tree. Call `stop`
/// when done: the loader threads hold the object until then.
public final class TreeReadAhead: @unchecked Sendable {  // state guarded by `condition`
    private let store: Store
    private let window: Int
    private let condition = NSCondition()
    /// Trees to load, a stack: the next one the walk wants is last.
    private var wanted: [ChunkID] = []
    private var loading: Set<ChunkID> = []
    private var loaded: [ChunkID: Result<Tree, Error>] = [:]
    private var stopping = false
    private var threads: WorkerThreads?

    /// Starts `threads` loaders for `store`.
    public init(store: Store, threads: Int, window: Int = 256) {
        self.store = store
        self.window = max(1, window)
        self.threads = WorkerThreads(count: max(1, threads), name: "tree-read-ahead") { [self] _ in loadWanted() }
    }

    /// The tree `id`, loaded (and checked) by `Store.loadTree`; its subtrees start loading.
    public func tree(_ id: ChunkID) throws -> Tree {
        condition.lock()
        while loading.contains(id) { condition.wait() }
        var result = loaded.removeValue(forKey: id)
        if result == nil, let i = wanted.lastIndex(of: id) { wanted.remove(at: i) }  // no thread got to it: load it here
        condition.broadcast()  // room in the window
        condition.unlock()
        if result == nil { result = Result { try store.loadTree(id) } }
        if case .success(let tree) = result {
            let subtrees = tree.nodes.reversed().compactMap(\.subtree)
            if !subtrees.isEmpty {
                condition.withLock {
                    wanted.append(contentsOf: subtrees)
                    condition.broadcast()
                }
            }
        }
        return try result!.get()
    }

    /// Stops the loaders (trees loaded and never asked for are dropped).
    public func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
        threads?.join()
        threads = nil
    }

    private func loadWanted() {
        condition.lock()
        while true {
            while !stopping && (wanted.isEmpty || loaded.count + loading.count >= window) { condition.wait() }
            if stopping { break }
            let id = wanted.removeLast()
            // A tree that is in the snapshot twice (two identical directories) is loaded once per use.
            if loaded[id] != nil || loading.contains(id) { continue }
            loading.insert(id)
            condition.unlock()
            let result = Result { try store.loadTree(id) }
            condition.lock()
            loading.remove(id)
            loaded[id] = result
            condition.broadcast()
        }
        condition.unlock()
    }
}
