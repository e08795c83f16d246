import ArgumentParser
import ChunkStore
import Foundation

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete data no snapshot references; repack packs that are mostly unused.",
        discussion: """
            Takes an exclusive lock. Crash-safe at every step: new packs and the new index are written \
            before anything old is deleted. Refuses to run when a snapshot or tree cannot be read.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var progress: ProgressOptions
    @Option(help: "Repack packs whose unused share exceeds this percentage.") var maxUnused = "5%"

    func run() throws {
        guard let value = Double(maxUnused.hasSuffix("%") ? String(maxUnused.dropLast()) : maxUnused), (0...100).contains(value) else {
            throw ValidationError("--max-unused takes a percentage, like 5%")
        }
        var pruner = Pruner(store: try storeOptions.open())
        pruner.maxUnused = value / 100
        pruner.progress = Output.progress(json: output.json, options: progress)
        let r = try Output.withProgress(json: output.json) { try pruner.run() }
        if output.json { try Output.json(r) } else { Self.print(r) }
    }

    /// The report in words.
    static func print(_ r: Pruner.Report) {
        Output.line("\(r.snapshots) snapshots, \(r.liveBlobs) live blobs in \(r.packs) packs")
        Output.line(
            "deleted \(r.packsDeleted) packs, repacked \(r.packsRepacked) into \(r.packsWritten) (\(Output.bytes(r.bytesRepacked)) copied), \(Output.bytes(r.bytesFreed)) freed"
        )
        if r.temporaryFilesRemoved > 0 { Output.line("removed \(r.temporaryFilesRemoved) temporary file(s) left by interrupted writes") }
        Output.line(String(format: "duration %.2f s", r.durationSeconds))
    }
}

struct Unlock: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove stale locks (their process is gone, or silent for 30 minutes); --all removes every lock.")

    @OptionGroup var storeOptions: StoreOptions
    @Flag(help: "Remove every lock, also live ones: only when you know no backup or prune runs.") var all = false

    func run() throws {
        let store = try storeOptions.open()
        var removed = 0
        for (name, record) in StoreLock.list(store) {
            guard all || record == nil || record!.isStale(staleAfter: StoreLock.staleAfter) else { continue }
            try StoreLock.remove(name, from: store)
            removed += 1
            Output.line("removed lock \(name.prefix(8))" + (record.map { " (pid \($0.pid) on \($0.host), \($0.purpose))" } ?? ""))
        }
        Output.line("\(removed) lock(s) removed")
    }
}
