import ArgumentParser
import ChunkStore
import Foundation

struct Tag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add, remove or set the tags of snapshots.",
        discussion: """
            A snapshot's id is the hash of its record, so a snapshot whose tags change gets a new id \
            (restic does the same); the old record is removed after the new one is written. `forget \
            --keep-tag` keeps snapshots by tag.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: "Snapshot ids (unique prefixes) or 'latest'.") var snapshots: [String]
    @Option(help: "Add this tag (repeatable).") var add: [String] = []
    @Option(help: "Remove this tag (repeatable).") var remove: [String] = []
    @Option(help: "Replace the tags with these (repeatable; `--set ''` clears them).") var set: [String] = []

    func validate() throws {
        guard !snapshots.isEmpty else { throw ValidationError("name the snapshots to tag (ids or 'latest')") }
        guard !(add.isEmpty && remove.isEmpty && set.isEmpty) else { throw ValidationError("give --add, --remove or --set") }
        guard set.isEmpty || (add.isEmpty && remove.isEmpty) else { throw ValidationError("--set replaces the tags: use it without --add and --remove") }
    }

    func run() throws {
        let store = try storeOptions.open()
        let lock = try StoreLock.acquire(store, exclusive: true, purpose: "tag")
        defer { lock.release() }
        struct Change: Encodable { var old: String; var new: String; var tags: [String] }
        var changes: [Change] = []
        for id in Set(try snapshots.map { try store.resolveSnapshot($0).id }).sorted() {
            var record = try store.loadSnapshot(id: id)
            var tags = set.isEmpty ? record.tags : set.filter { !$0.isEmpty }
            for t in add where !tags.contains(t) { tags.append(t) }
            tags.removeAll { remove.contains($0) }
            guard tags != record.tags else {
                changes.append(Change(old: id, new: id, tags: tags))
                continue
            }
            record.tags = tags
            let new = try store.saveSnapshot(record)
            if new != id { try store.deleteSnapshot(id: id) }
            changes.append(Change(old: id, new: new, tags: tags))
        }
        if output.json { return try Output.json(changes) }
        for c in changes {
            Output.line(
                c.old == c.new
                    ? "\(c.old.prefix(8)) unchanged  [\(c.tags.joined(separator: ", "))]"
                    : "\(c.old.prefix(8)) -> \(c.new.prefix(8))  [\(c.tags.joined(separator: ", "))]")
        }
    }
}
