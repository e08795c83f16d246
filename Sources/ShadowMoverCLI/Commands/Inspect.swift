import ArgumentParser
import ChunkStore
import Foundation
import ShadowCopy

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Look inside the store.",
        subcommands: [InspectStats.self, InspectSnapshot.self, InspectChunk.self, InspectPack.self, InspectDiff.self, InspectCat.self, InspectReport.self])
}

struct InspectSnapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Show a snapshot: sources, writers and components, provider, freeze window, stats.")
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Snapshot id (a unique prefix) or 'latest'.") var snapshot: String

    func run() throws {
        let store = try storeOptions.open()
        let (id, record) = try store.resolveSnapshot(snapshot)
        let session = try record.shadowCopy.map { try $0.decode(SessionReport.self) }
        if output.json {
            struct Item: Encodable { var id: String; var record: SnapshotRecord; var session: SessionReport? }
            try Output.json(Item(id: id, record: record, session: session))
            return
        }
        let s = record.summary
        Output.line("snapshot \(id)")
        Output.line("  time:    \(Output.time(record.time))   host: \(record.hostname)   user: \(record.username)")
        Output.line("  paths:   \(record.paths.joined(separator: ", "))")
        Output.line(
            "  files:   \(s.files), \(Output.bytes(s.bytesProcessed)) (\(Output.bytes(s.bytesRead)) read in \(s.chunks) chunks, \(s.filesUnchanged) files unchanged); added \(Output.bytes(s.bytesAdded)) (\(Output.bytes(s.bytesStored)) stored)"
        )
        guard let session else {
            Output.line("  shadow copy: none (files were read live)")
            return
        }
        SessionText.print(session)
        for w in session.components.writers {
            Output.line("  writer \(w.name) (\(w.instanceName))\(w.restoreMethod.map { ", restore method \($0)" } ?? "")")
            for c in w.components {
                let result = c.backupSucceeded.map { $0 ? "succeeded" : "failed" } ?? "-"
                let info = (c.freezeInfo ?? [:]).map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " ")
                Output.line(
                    "    component \(c.logicalPath.isEmpty ? "" : c.logicalPath + "/")\(c.name) [\(c.type.rawValue)] \(c.selected ? "selected" : "not selected"), backup \(result)\(info.isEmpty ? "" : ", at freeze: " + info)"
                )
            }
        }
        for sc in session.shadowCopies {
            Output.line(
                "  shadow copy \(sc.snapshotID.prefix(8)) of \(sc.volume.mountPoint) by \(sc.provider.rawValue) at \(Output.time(sc.created)) on \(sc.host)")
        }
        for w in session.warnings { Output.line("  note: \(w)") }
    }
}
