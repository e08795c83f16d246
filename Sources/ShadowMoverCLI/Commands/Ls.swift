import ArgumentParser
import ChunkStore
import Foundation

struct Ls: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the files in a snapshot.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: "Snapshot id (a unique prefix) or 'latest'.") var snapshot: String
    @Argument(help: "List only below this path.") var path: String?

    struct Item: Encodable {
        var path: String
        var type: String
        var size: UInt64
        var mode: String
        var mtime: String
    }

    func run() throws {
        let store = try storeOptions.open()
        let (_, record) = try store.resolveSnapshot(snapshot)
        var items: [Item] = []
        let scope = PathScope(path)
        func walk(_ id: ChunkID, _ dir: String) throws {
            for node in try store.loadTree(id).nodes {
                let full = dir + "/" + node.name
                guard scope.leadsInto(full) else { continue }
                if scope.contains(full) {
                    items.append(Item(path: full, type: node.kind.rawValue, size: node.size, mode: String(node.mode, radix: 8), mtime: node.mtime.iso8601))
                }
                if let sub = node.subtree { try walk(sub, full) }
            }
        }
        try walk(record.tree, "")
        if output.json {
            try Output.json(items)
        } else {
            for i in items {
                Output.line(
                    "\(i.type.prefix(4).padding(toLength: 4, withPad: " ", startingAt: 0)) \(i.mode.padding(toLength: 5, withPad: " ", startingAt: 0)) \(String(i.size).padding(toLength: 12, withPad: " ", startingAt: 0)) \(i.path)"
                )
            }
        }
    }
}
