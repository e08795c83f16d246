import ArgumentParser
import ChunkStore
import Foundation
import JobFormat
import Jobs

struct Job: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Backup-to-disk jobs described in a file (docs/JOBS.md).", subcommands: [JobRun.self, JobValidate.self, JobHistory.self])
}

struct JobValidate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "validate", abstract: "Report every mistake in a job file, with its line.")
    @Argument(help: "The job file (TOML).") var file: String

    func run() throws {
        switch JobFile.load(path: file) {
        case .success(let job): print("\(file): job '\(job.name)' is valid (store \(job.store), \(job.sources.count) source(s))")
        case .failure(let errors): throw errors
        }
    }
}

struct JobRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run a job: back up, apply retention, prune if asked, record the run in the store's history.")
    @OptionGroup var output: OutputOptions
    @Argument(help: "The job file (TOML).") var file: String

    func run() throws {
        let job: JobFile
        switch JobFile.load(path: file) {
        case .success(let j): job = j
        case .failure(let errors): throw errors
        }
        let outcome = try JobRunner(job: job).run()
        let h = outcome.history
        if output.json {
            try Output.json(h)
        } else {
            Output.line(
                "job \(h.job): \(h.result), snapshot \(h.snapshot?.prefix(8) ?? "-"), \(Output.bytes(h.bytesRead)) read, \(Output.bytes(h.bytesAdded)) added"
                    + (h.freezeWindowMs.map { String(format: ", freeze window %.2f ms", $0) } ?? "")
                    + (h.forgotten > 0 ? ", \(h.forgotten) snapshot(s) forgotten" : ""))
        }
        if h.result == "partial" { throw ExitCode(3) }
    }
}

struct JobHistory: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "history", abstract: "Every recorded job run in the store.")
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let (records, damaged) = try JobRunner.history(try storeOptions.open())
        for d in damaged { Output.warn("warning: \(d) — left out") }
        if output.json { return try Output.json(records) }
        Output.table(
            ["job", "start", "end", "result", "snapshot", "read", "added", "freeze ms"],
            records.map { r in
                [
                    r.job, Output.time(r.start), Output.time(r.end), r.result, String(r.snapshot?.prefix(8) ?? "-"), Output.bytes(r.bytesRead),
                    Output.bytes(r.bytesAdded),
                    r.freezeWindowMs.map { String(format: "%.2f", $0) } ?? "-",
                ]
            })
    }
}
