import ChunkStore
import Foundation

/// The first step of a restore: walking the snapshot's trees into a plan of entries in depth-first
/// order (a directory before what it holds), with the damage met on the way.
extension Restorer {
    /// The entries to restore in depth-first order, and the trees that could not be read (their
    /// directories are restored empty with `skipDamaged`).
    func makePlan(_ record: SnapshotRecord, target: PathBytes) throws -> (plan: [Entry], damage: [DamageReport]) {
        var plan: [Entry] = []
        var damage: [DamageReport] = []
        let trees = TreeReadAhead(store: store, threads: options.workers)
        defer { trees.stop() }
        if let sub = options.subPath {
            let node = try find(sub, in: record.tree)
            walk(node: node, at: target.appending(node.nameBytes), parent: -1, depth: 0, trees: trees, into: &plan, damage: &damage)
        } else {
            walk(tree: record.tree, at: target, parent: -1, depth: 0, trees: trees, into: &plan, damage: &damage)
        }
        return (plan, damage)
    }

    func find(_ path: String, in root: ChunkID) throws -> Node {
        var tree = try store.loadTree(root)
        let parts = PathBytes(path).components
        guard !parts.isEmpty else { throw RestoreError.pathNotInSnapshot(path) }
        for (i, part) in parts.enumerated() {
            guard let node = tree.nodes.first(where: { $0.nameBytes == part }) else {
                throw RestoreError.pathNotInSnapshot(path)
            }
            if i == parts.count - 1 { return node }
            guard let sub = node.subtree else { throw RestoreError.pathNotInSnapshot(path) }
            tree = try store.loadTree(sub)
        }
        throw RestoreError.pathNotInSnapshot(path)
    }

    func walk(node: Node, at path: PathBytes, parent: Int, depth: Int, trees: TreeReadAhead, into plan: inout [Entry], damage: inout [DamageReport]) {
        var node = node
        if node.contentLists != nil {  // a large file: its chunk ids are read from its content lists
            do {
                node.content = try store.content(of: node)
            } catch let e as StoreError {
                damage.append(DamageReport(object: "a content list of \(path)", reason: "\(e)", affectedFiles: [path.description]))
                node.content = []
            } catch {
                damage.append(DamageReport(object: "a content list of \(path)", reason: "\(error)", affectedFiles: [path.description]))
                node.content = []
            }
            node.contentLists = nil
        }
        if let problem = store.sizeMismatch(node, content: node.content ?? []) {
            // Restored as it says, it would be a file of the wrong size (a sparse terabyte, say): left out.
            damage.append(DamageReport(object: "the tree entry of \(path)", reason: problem, affectedFiles: [path.description]))
            return
        }
        plan.append(Entry(path: path, parent: parent, node: node))
        if node.kind == .directory, let sub = node.subtree {
            walk(tree: sub, at: path, parent: plan.count - 1, depth: depth + 1, trees: trees, into: &plan, damage: &damage)
        }
    }

    func walk(tree id: ChunkID, at path: PathBytes, parent: Int, depth: Int, trees: TreeReadAhead, into plan: inout [Entry], damage: inout [DamageReport]) {
        guard depth <= Tree.maximumDepth else {
            damage.append(
                DamageReport(object: "tree \(id)", reason: "it nests deeper than \(Tree.maximumDepth) directories", affectedFiles: ["everything under \(path)"])
            )
            return
        }
        let tree: Tree
        do {
            tree = try trees.tree(id)
        } catch StoreError.damagedTree(_, let reason) {
            damage.append(DamageReport(object: "tree \(id)", reason: reason, affectedFiles: ["everything under \(path)"]))
            return
        } catch {
            damage.append(DamageReport(object: "tree \(id)", reason: "\(error)", affectedFiles: ["everything under \(path)"]))
            return
        }
        for node in tree.nodes {
            walk(node: node, at: path.appending(node.nameBytes), parent: parent, depth: depth, trees: trees, into: &plan, damage: &damage)
        }
    }

    func completeReports(_ reports: [DamageReport], plan: [Entry]) -> [DamageReport] {
        reports.map { report in
            var r = report
            if let id = report.blob {
                let files = plan.filter { $0.node.content?.contains(id) == true }.map(\.path.description)
                if !files.isEmpty { r.affectedFiles = files }
            }
            return r
        }
    }
}
