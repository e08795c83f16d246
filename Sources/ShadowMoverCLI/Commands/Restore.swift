import ArgumentParser
import ChunkStore
import DataMover
import Foundation
import Jobs
import ShadowCopy

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a snapshot (or one path of it) into a target directory.",
        discussion: """
            Every chunk is verified against its SHA-256 before it is written. The target must be empty \
            unless --overwrite is given. With --path, that path of the snapshot is restored into the \
            target under its own name. Damaged data stops the restore and names the damaged objects and \
            the files they affect; --skip-damaged restores everything else and exits with code 3.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var progress: ProgressOptions

    @Argument(help: "Snapshot id (a unique prefix) or 'latest'.") var snapshot: String
    @Option(name: [.short, .long], help: "Directory to restore into (with --component: an alternate location).") var target: String?
    @Option(
        help: ArgumentHelp(
            "Restore a writer's component the way its writer says: WRITER[/COMPONENT], e.g. sqlite, postgres/data, /srv/app.db (see `inspect snapshot`).",
            valueName: "writer[/component]"))
    var component: String?
    @Flag(help: "With --component: replace a database even though a process has it open.") var replaceLive = false
    @Flag(help: "With --component postgres: start the restored cluster (as its data directory's owner) and wait until recovery is done.")
    var start = false
    @Option(help: ArgumentHelp("With --start: the port it listens on (default: the first free one from 5433).", valueName: "port"))
    var port: Int?
    @Option(help: ArgumentHelp("With --component: the exec writer program that restores it (repeatable; default: those in --writers-dir).", valueName: "path"))
    var execWriter: [String] = []
    @Option(help: ArgumentHelp("With --component: where exec writers are found.", valueName: "dir")) var writersDir = WriterDiscovery.defaultDirectory
    @Option(help: "Restore only this path of the snapshot (as it was backed up, e.g. /home/me/docs).") var path: String?
    @Flag(help: "Allow a non-empty target and replace files in the way.") var overwrite = false
    @Flag(help: "Restore every file not affected by damaged data, and report the rest.") var skipDamaged = false
    @Option(help: "Restore workers (default: one per core; 8 for a store on object storage).") var workers: Int?

    func run() throws {
        let store = try storeOptions.open()
        let (id, record) = try store.resolveSnapshot(snapshot)
        if let component {
            var restore = ComponentRestore(store: store, record: record, snapshotID: id, selector: component)
            restore.target = target
            restore.replaceLive = replaceLive
            restore.start = start
            restore.port = port
            restore.discovery = WriterDiscovery(directory: writersDir)
            restore.discovery.execWriters = execWriter
            for note in try restore.run() { Output.line(note) }
            return
        }
        if start || port != nil { throw ValidationError("--start and --port go with --component postgres") }
        guard let target else { throw ValidationError("--target DIR is needed (or --component to restore a writer's component in place)") }
        var options = RestoreOptions(target: target)
        options.subPath = path
        options.overwrite = overwrite
        options.skipDamaged = skipDamaged
        options.workers = workers.map { Swift.max(1, $0) } ?? store.readers
        options.progress = Output.progress(json: output.json, options: progress)
        let summary = try Output.withProgress(json: output.json) { try Restorer(store: store, options: options).run(snapshot: record) }
        for w in summary.warnings { Output.warn("warning: \(w)") }
        if summary.damage.isEmpty {
            for note in try WriterRestore.apply(record: record, target: target, subPath: path) { Output.warn("note: \(note)") }
        }
        for d in summary.damage { Output.warn("damaged: \(d)") }
        let rate = summary.durationSeconds > 0 ? Double(summary.bytesWritten) / summary.durationSeconds : 0
        if output.json {
            struct Report: Encodable { var snapshot: String; var summary: RestoreSummary; var throughputBytesPerSecond: Double }
            try Output.json(Report(snapshot: id, summary: summary, throughputBytesPerSecond: rate))
        } else {
            Output.line("restored snapshot \(id.prefix(8)) to \(target)")
            Output.line("  files: \(summary.files) (\(summary.directories) directories, \(summary.otherEntries) other), \(Output.bytes(summary.bytesWritten))")
            if summary.bytesReused > 0 { Output.line("  reused: \(Output.bytes(summary.bytesReused)) written from chunks read once for several places") }
            Output.line(String(format: "  duration: %.2f s   throughput: %@", summary.durationSeconds, Output.rate(rate)))
        }
        if !summary.damage.isEmpty { throw ExitCode(3) }
    }
}
