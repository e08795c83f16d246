import ArgumentParser
import ChunkStore
import Foundation

struct Repair: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Repair a damaged store.", subcommands: [RepairIndex.self])
}

struct RepairIndex: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Rebuild the index from the packs' trailers (after an index segment was damaged or lost).")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let store = try storeOptions.open()
        let result = try store.rebuildIndex()
        for d in result.damagedPacks { Output.warn("warning: \(d)") }
        if output.json {
            struct Report: Encodable { var packs: Int; var blobs: Int; var damagedPacks: [String] }
            try Output.json(Report(packs: result.packs, blobs: result.blobs, damagedPacks: result.damagedPacks))
        } else {
            Output.line("indexed \(result.blobs) blobs from \(result.packs) packs")
        }
        if !result.damagedPacks.isEmpty { throw ExitCode.failure }
    }
}
