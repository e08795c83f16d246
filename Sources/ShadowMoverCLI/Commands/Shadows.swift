import ArgumentParser
import Foundation
import ShadowCopy

struct Shadows: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage shadow copies kept with --keep or left behind by a killed agent.",
        subcommands: [ShadowsList.self, ShadowsDelete.self], defaultSubcommand: ShadowsList.self)
}

struct ShadowsList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the shadow copies on this host.")
    @OptionGroup var output: OutputOptions

    func run() throws {
        let records = ShadowRegistry(paths: CoordinatorPaths()).list()
        if output.json {
            struct Item: Encodable { var record: ShadowRegistry.Record; var orphan: Bool }
            try Output.json(records.map { Item(record: $0, orphan: $0.isOrphan) })
            return
        }
        Output.table(
            ["ID", "Volume", "Provider", "Created", "State", "Path"],
            records.map { r in
                let state = r.keep ? "kept" : (r.isOrphan ? "orphan (agent \(r.ownerPID) gone)" : "in use by pid \(r.ownerPID)")
                return [
                    String(r.properties.snapshotID.prefix(8)), r.properties.volume.mountPoint, r.properties.provider.rawValue,
                    Output.time(r.properties.created), state, r.properties.snapshotPath,
                ]
            })
    }
}

struct ShadowsDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete shadow copies by id, or every orphan with --orphans.")
    @OptionGroup var output: OutputOptions
    @Argument(help: "Shadow copy ids (unique prefixes).") var ids: [String] = []
    @Flag(help: "Delete every shadow copy whose agent is gone.") var orphans = false

    func run() throws {
        let registry = ShadowRegistry(paths: CoordinatorPaths())
        var targets: [ShadowRegistry.Record] = []
        for id in ids { targets.append(try registry.find(id)) }
        if orphans { targets += registry.list().filter(\.isOrphan) }
        guard !targets.isEmpty else { throw ValidationError("name shadow copies to delete, or pass --orphans") }
        for r in targets {
            if !r.keep && !r.isOrphan {
                throw ValidationError("shadow copy \(r.properties.snapshotID.prefix(8)) is in use by pid \(r.ownerPID)")
            }
            try registry.delete(r)
            if !output.json { Output.line("deleted \(r.properties.snapshotID.prefix(8)) (\(r.properties.snapshotPath))") }
        }
        if output.json { try Output.json(targets.map(\.properties.snapshotID)) }
    }
}
