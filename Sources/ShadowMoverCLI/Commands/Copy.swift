import ArgumentParser
import ChunkStore
import DataMover
import Foundation
import ObjectStorage

struct Copy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy snapshots from another store into this one (local or S3, either way).",
        discussion: """
            --store names the destination, --from-store the source. The source's password comes from \
            --from-password-file, --from-key-file, $SHADOWMOVER_FROM_PASSWORD(_FILE|_COMMAND), or, when \
            none is given, from wherever the destination's comes. Blobs are copied as they are when \
            both stores cut and name chunks alike (same chunker parameters and chunk-id key); \
            otherwise every file is re-chunked for the destination, which the command says first. A \
            snapshot the destination already holds (same time, host and paths) is skipped.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var progress: ProgressOptions

    @Argument(help: "Snapshot ids (unique prefixes) or 'latest'; none: every snapshot.") var snapshots: [String] = []
    @Option(help: ArgumentHelp("The store to copy from.", valueName: "location")) var fromStore: String
    @Option(help: ArgumentHelp("File whose first line is the source store's password.", valueName: "file")) var fromPasswordFile: String?
    @Option(help: ArgumentHelp("Key file that opens the source store.", valueName: "file")) var fromKeyFile: String?
    @Option(help: ArgumentHelp("Index cache of a remote source store.", valueName: "path")) var fromCacheDir: String?

    func run() throws {
        let destination = try storeOptions.open()
        let source = try StoreLocation.open(fromStore, cacheDirectory: fromCacheDir, secret: sourceSecret())
        guard source.location != destination.location else { throw CommandError("the source and the destination are the same store (\(source.location))") }
        var records: [(id: String, record: SnapshotRecord)]
        if snapshots.isEmpty {
            let all = try source.snapshots()
            for d in all.damaged { Output.warn("damaged, not copied: \(d)") }
            records = all.records
        } else {
            records = try snapshots.map { try source.resolveSnapshot($0) }
            records.sort { $0.record.time < $1.record.time }
        }
        let copier = SnapshotCopier(from: source, to: destination)
        if copier.rechunks {
            Output.warn(
                "the stores cut or name chunks differently (chunker parameters or chunk-id key): every file will be re-chunked for \(destination.location)")
        }
        copier.progress = Output.progress(json: output.json, options: progress)
        let results = try Output.withProgress(json: output.json) { try copier.copy(records) }
        if output.json { return try Output.json(results) }
        for r in results {
            if let twin = r.alreadyThere {
                Output.line("\(r.source.prefix(8)) is already in the destination as \(twin.prefix(8))")
            } else {
                Output.line(
                    "\(r.source.prefix(8)) -> \(r.copy?.prefix(8) ?? "?")  \(r.blobsCopied) blob(s) copied (\(Output.bytes(r.bytesCopied))), \(r.blobsSkipped) already there"
                )
            }
        }
    }

    /// Where the source's password or key comes from: --from-key-file or --from-password-file; else
    /// $SHADOWMOVER_FROM_PASSWORD(_FILE|_COMMAND) in place of the plain variables; else whatever opens
    /// the destination.
    private func sourceSecret() -> SecretSource {
        var environment = ProcessInfo.processInfo.environment
        if fromKeyFile != nil || fromPasswordFile != nil {
            return SecretSource(keyFile: fromKeyFile, passwordFile: fromPasswordFile, environment: environment)
        }
        let suffixes = ["", "_FILE", "_COMMAND"]
        guard suffixes.contains(where: { environment["SHADOWMOVER_FROM_PASSWORD" + $0] != nil }) else { return storeOptions.secret }
        for suffix in suffixes { environment["SHADOWMOVER_PASSWORD" + suffix] = environment["SHADOWMOVER_FROM_PASSWORD" + suffix] }
        return SecretSource(environment: environment)
    }
}
