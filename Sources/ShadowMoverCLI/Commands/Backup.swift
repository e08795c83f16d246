import ArgumentParser
import ChunkStore
import Compression
import DataMover
import Foundation
import Jobs
import ShadowCopy

struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up files and directories into the store.",
        discussion: """
            Runs a shadow copy session when writers take part or the paths lie on a snapshot-capable \
            volume (btrfs, XFS with reflink): writers are frozen for the shadow copy only, and the data \
            is read from it. --no-shadow-copy reads the live files. Unreadable files are reported and \
            skipped; the backup of the rest still commits and the exit code is 3.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup(title: "Writers") var writerOptions: WriterOptions
    @OptionGroup(title: "Shadow copy") var session: SessionOptions

    @Argument(help: "Files and directories to back up.") var paths: [String]
    @Flag(name: [.customShort("x"), .long], help: "Do not cross into other filesystems.") var oneFileSystem = false
    @Option(help: "Codec for new chunks (default: the store's).") var codec: String?
    @Option(help: "Chunk, hash and compress workers (default: one per core).") var workers: Int?
    @Option(name: .customLong("tag"), help: "Tag the snapshot (repeatable).") var tags: [String] = []
    @Flag(help: "Read every file, even those unchanged since the parent snapshot.") var force = false
    @OptionGroup var progress: ProgressOptions
    @Option(help: "Snapshot to compare against for unchanged files (default: the latest with the same paths and host).") var parent: String?

    func run() throws {
        let store = try storeOptions.open()
        if !store.cipher.isEncrypted {
            Output.warn("note: the store at \(store.location) is not encrypted: whoever can read it can read these files")
        }
        var options = BackupOptions(paths: paths)
        options.oneFileSystem = oneFileSystem
        options.tags = tags
        options.force = force
        options.parent = parent
        if let codec { options.codec = try Codec(parsing: codec) }
        if let workers {
            guard workers > 0 else { throw ValidationError("--workers must be at least 1") }
            options.workers = workers
        }
        options.progress = Output.progress(json: output.json, linesOnStdout: true, options: progress)
        var job = BackupJob(backup: options)
        job.useShadowCopy = !session.noShadowCopy
        job.coordinator = try session.coordinatorOptions()
        job.discovery = writerOptions.discovery
        let outcome = try Output.withProgress(json: output.json) { try job.run(store: store) }
        let result = outcome.result
        let s = result.record.summary
        for n in outcome.notes { Output.warn("note: \(n)") }
        for e in s.errors { Output.warn("warning: \(e)") }
        if output.json {
            struct Report: Encodable {
                var type = "summary"
                var snapshot: String
                var summary: BackupSummary
                var dedupRatio: Double?
                var compressionRatio: Double
                var throughputBytesPerSecond: Double
                var shadowCopy: SessionReport?
                var notes: [String]
            }
            try Output.jsonLine(
                Report(
                    snapshot: result.snapshotID, summary: s, dedupRatio: s.dedupRatio, compressionRatio: s.compressionRatio,
                    throughputBytesPerSecond: s.throughput, shadowCopy: outcome.session, notes: outcome.notes))
        } else {
            Output.line("snapshot \(result.snapshotID.prefix(8)) saved")
            Output.line("  files:        \(s.files) (\(s.directories) directories, \(s.otherEntries) other)")
            Output.line(
                "  bytes read:   \(Output.bytes(s.bytesRead)) in \(s.chunks) chunks\(s.filesUnchanged > 0 ? "; \(s.filesUnchanged) unchanged files (\(Output.bytes(s.bytesUnchanged))) not read" : "")"
            )
            Output.line("  bytes added:  \(Output.bytes(s.bytesAdded)) in \(s.chunksNew) new chunks, \(Output.bytes(s.bytesStored)) stored")
            let dedup = s.dedupRatio.map { String(format: "%.2f×", $0) } ?? "all data already in the store"
            Output.line(String(format: "  dedup ratio:  %@   compression ratio: %.2f×", dedup, s.compressionRatio))
            Output.line(String(format: "  duration:     %.2f s   throughput: %@", s.durationSeconds, Output.rate(s.throughput)))
            if !s.errors.isEmpty { Output.line("  \(s.errors.count) file(s) could not be read (see warnings above)") }
            if let report = outcome.session { SessionText.print(report) }
        }
        if !s.errors.isEmpty { throw ExitCode(3) }
    }
}
