import ArgumentParser
import ChunkStore
import Foundation

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify the store: structure always, every byte with --read-data.",
        discussion: """
            Structure: the config, every index segment against the packs' trailers, every snapshot record \
            and every tree reachable from them, every chunk they reference. --read-data reads and verifies \
            every blob; --read-data=N% a random sample of N percent of the packs. Findings name the damaged \
            object and the snapshots and files it affects. Exit code 0 only when the store is clean.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var progress: ProgressOptions
    @Option(name: .customLong("read-data"), help: ArgumentHelp("Read and verify blobs: all, or a percentage of the packs (e.g. 10%).", valueName: "share"))
    var readData: String?
    @Option(help: "Threads verifying data with --read-data, each holding one pack (default: one per core; 8 for a store on object storage).") var workers: Int?

    func run() throws {
        let store = try storeOptions.open()
        var fraction: Double?
        if let readData {
            if readData == "all" {
                fraction = 1
            } else {
                guard let value = Double(readData.hasSuffix("%") ? String(readData.dropLast()) : readData), value > 0, value <= 100 else {
                    throw ValidationError("--read-data takes a percentage between 0 and 100, like 10%")
                }
                fraction = value / 100
            }
        }
        var checker = Checker(store: store)
        if let workers { checker.workers = Swift.max(1, workers) }  // default: store.readers
        checker.progress = Output.progress(json: output.json, options: progress)
        let report = Output.withProgress(json: output.json) { checker.run(readFraction: fraction) }
        if output.json {
            try Output.json(report)
        } else {
            Output.line(
                "\(report.snapshots) snapshots, \(report.trees) trees, \(report.packs) packs, \(report.blobs) indexed blobs\(fraction != nil ? ", \(report.blobsRead) blobs read and verified" : "")"
            )
            for f in report.findings { Output.line("damaged: \(f)") }
            Output.line(report.isClean ? "no problems found" : "\(report.findings.count) problem(s) found")
        }
        if !report.isClean { throw ExitCode.failure }
    }
}
