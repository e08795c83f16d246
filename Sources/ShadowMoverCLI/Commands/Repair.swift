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
        abstract: "Rebuild the index from the packs' trailers (after an index segment was damaged or lost).",
        discussion: """
            Each trailer's lengths are checked against its pack. With --read-data every blob is read and \
            its SHA-256 verified before it is indexed: a trailer whose checksum matches can still lie, and \
            what fails is left out and reported.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    // An option, not a flag, as check's is: the CLI turns a bare `--read-data` into `--read-data=all`.
    @Option(name: .customLong("read-data"), help: ArgumentHelp("Read and verify every blob before indexing it (all).", valueName: "all"))
    var readData: String?

    func run() throws {
        if let readData, readData != "all" { throw ValidationError("repair index --read-data reads every blob: give it no value, or all") }
        let store = try storeOptions.open()
        let result = try store.rebuildIndex(readData: readData != nil)
        for d in result.damagedPacks { Output.warn("left out: \(d)") }
        if output.json {
            struct Report: Encodable { var packs: Int; var blobs: Int; var damagedPacks: [String] }
            try Output.json(Report(packs: result.packs, blobs: result.blobs, damagedPacks: result.damagedPacks))
        } else {
            Output.line("indexed \(result.blobs) blobs from \(result.packs) packs")
        }
        if !result.damagedPacks.isEmpty { throw ExitCode.failure }
    }
}
