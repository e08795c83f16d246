import ArgumentParser
import ChunkStore
import Foundation

struct Find: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find files by name across snapshots.",
        discussion: """
            PATTERN is a shell glob (*, ?, [...]): without a '/' it matches an entry's name, with one \
            its whole path as backed up (e.g. '/srv/*/app.db'). Every snapshot is searched, newest first, \
            unless --snapshot names some; --path limits the search to a directory; --newer and --older \
            compare modification times ('2026-11-30', '2026-11-30 14:00', or ISO 8601; local time unless \
            it ends in Z).
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: "Glob patterns; an entry matching any is listed.") var patterns: [String]
    @Option(name: .customLong("snapshot"), help: "Search only this snapshot (id prefix or 'latest'; repeatable).") var snapshots: [String] = []
    @Option(help: "Search only below this path.") var path: String?
    @Option(help: "Only entries modified at or after this time.") var newer: String?
    @Option(help: "Only entries modified before this time.") var older: String?
    @Flag(help: "Match without regard to case.") var ignoreCase = false

    struct Match: Encodable {
        var snapshot: String
        var snapshotTime: String
        var path: String
        var type: String
        var size: UInt64
        var mode: String
        var mtime: String
    }

    func validate() throws {
        guard !patterns.isEmpty else { throw ValidationError("give at least one pattern, like '*.db'") }
        for (name, value) in [("--newer", newer), ("--older", older)] {
            if let value, Self.parseTime(value) == nil {
                throw ValidationError("\(name) \(value): not a time; use 2026-11-30, 2026-11-30 14:00 or ISO 8601")
            }
        }
    }

    func run() throws {
        let store = try storeOptions.open()
        let records = try chosenSnapshots(store)
        var found: [Match] = []
        var unreadable: [String] = []
        for (id, record) in records { search(store, id: id, record: record, into: &found, unreadable: &unreadable) }
        for u in unreadable { Output.warn("damaged: \(u)") }
        if output.json {
            try Output.json(found)
        } else {
            var last = ""
            for m in found {
                if m.snapshot != last {
                    Output.line("snapshot \(m.snapshot.prefix(8)) of \(m.snapshotTime):")
                    last = m.snapshot
                }
                Output.line(
                    "  \(m.type.prefix(4).padding(toLength: 4, withPad: " ", startingAt: 0)) \(m.mode.padding(toLength: 5, withPad: " ", startingAt: 0)) \(String(m.size).padding(toLength: 12, withPad: " ", startingAt: 0)) \(m.mtime)  \(m.path)"
                )
            }
            Output.warn("\(found.count) match(es) in \(records.count) snapshot(s)")
        }
        if !unreadable.isEmpty { throw ExitCode(3) }
    }

    /// The snapshots named with --snapshot, or every one; newest first.
    private func chosenSnapshots(_ store: Store) throws -> [(id: String, record: SnapshotRecord)] {
        if !snapshots.isEmpty { return try snapshots.map { try store.resolveSnapshot($0) } }
        let (all, damaged) = try store.snapshots()
        for d in damaged { Output.warn("warning: \(d)") }
        return all.sorted { $0.record.time > $1.record.time }
    }

    /// Walks one snapshot's trees (only where --path can match), appending the entries that match.
    private func search(_ store: Store, id: String, record: SnapshotRecord, into found: inout [Match], unreadable: inout [String]) {
        let from = newer.flatMap(Self.parseTime).map(Timestamp.init), before = older.flatMap(Self.parseTime).map(Timestamp.init)
        let scope = PathScope(path)
        let flags: Int32 = ignoreCase ? 1 << 4 : 0  // FNM_CASEFOLD, a glibc flag Swift does not import
        func matches(_ node: Node, _ full: String) -> Bool {
            if !scope.contains(full) { return false }
            if let from, node.mtime < from { return false }
            if let before, node.mtime >= before { return false }
            return patterns.contains { pattern in
                pattern.contains("/") ? fnmatch(pattern, full, FNM_PATHNAME | flags) == 0 : fnmatch(pattern, node.name, flags) == 0
            }
        }
        func walk(_ tree: ChunkID, _ directory: String, depth: Int) {
            guard depth <= Tree.maximumDepth else { return unreadable.append("\(id.prefix(8)):\(directory): nested deeper than \(Tree.maximumDepth)") }
            let nodes: [Node]
            do { nodes = try store.loadTree(tree).nodes } catch {
                return unreadable.append("\(id.prefix(8)):\(directory.isEmpty ? "/" : directory): \(error)")
            }
            for node in nodes {
                let full = directory + "/" + node.name
                if matches(node, full) {
                    found.append(
                        Match(
                            snapshot: id, snapshotTime: record.time.formatted(.iso8601), path: full, type: node.kind.rawValue,
                            size: node.size, mode: String(node.mode, radix: 8), mtime: node.mtime.iso8601))
                }
                if let sub = node.subtree, scope.leadsInto(full) { walk(sub, full, depth: depth + 1) }
            }
        }
        walk(record.tree, "", depth: 0)
    }

    /// '2026-11-30', '2026-11-30 14:00[:05]', or ISO 8601 ('2026-11-30T14:00:05Z'); local time unless
    /// the text says otherwise.
    static func parseTime(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = .current
        for format in ["yyyy-MM-dd", "yyyy-MM-dd HH:mm", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd'T'HH:mm:ss"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: text) { return date }
        }
        return nil
    }
}
