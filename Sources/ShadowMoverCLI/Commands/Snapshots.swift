import ArgumentParser
import ChunkStore
import Foundation

struct Snapshots: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the snapshots in the store, oldest first.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let store = try storeOptions.open()
        let (records, damaged) = try store.snapshots()
        for d in damaged { Output.warn("warning: \(d)") }
        if output.json {
            struct Item: Encodable { var id: String; var record: SnapshotRecord }
            try Output.json(records.map { Item(id: $0.id, record: $0.record) })
        } else {
            Output.table(
                ["ID", "Time", "Host", "Files", "Size", "Paths"],
                records.map { r in
                    [
                        String(r.id.prefix(8)), Output.time(r.record.time), r.record.hostname, "\(r.record.summary.files)",
                        Output.bytes(r.record.summary.bytesProcessed), r.record.paths.joined(separator: ", "),
                    ]
                })
            Output.line("\(records.count) snapshot(s)")
        }
        if !damaged.isEmpty { throw ExitCode.failure }
    }
}
