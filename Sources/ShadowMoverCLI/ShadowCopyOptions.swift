import ArgumentParser
import Foundation
import ShadowCopy

/// Options of the shadow copy session (writers, providers, limits), shared by `backup` and `writers`.
struct WriterOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Directory of exec writers (and fsfreeze-hook.d/ hook scripts).", valueName: "dir"))
    var writersDir = WriterDiscovery.defaultDirectory
    @Option(help: ArgumentHelp("A SQLite database to quiesce with the built-in writer (repeatable).", valueName: "path"))
    var sqlite: [String] = []
    @Option(help: ArgumentHelp("A query whose first value the SQLite writer records while frozen.", valueName: "sql"))
    var sqliteProbe: String?
    @Option(
        help: ArgumentHelp(
            "A PostgreSQL cluster to back up with the built-in writer: a libpq connection string, e.g. \"host=/run/postgresql port=5432 user=postgres dbname=postgres\" (repeatable).",
            valueName: "conninfo"))
    var postgres: [String] = []
    @Option(help: ArgumentHelp("An exec writer program (repeatable); see docs/WRITERS.md.", valueName: "path"))
    var execWriter: [String] = []
    @Option(help: ArgumentHelp("A qemu-ga fsfreeze-hook script or directory of scripts (repeatable).", valueName: "path"))
    var fsfreezeHook: [String] = []

    var discovery: WriterDiscovery {
        var d = WriterDiscovery(directory: writersDir)
        d.sqliteDatabases = sqlite
        d.sqliteProbe = sqliteProbe
        d.postgresConnections = postgres
        d.execWriters = execWriter
        d.fsfreezeHooks = fsfreezeHook
        return d
    }
}

struct SessionOptions: ParsableArguments {
    @Flag(help: "Read the live files: no writers, no shadow copy.") var noShadowCopy = false
    @Option(help: ArgumentHelp("Provider for every volume: btrfs, reflink or copy (default: per volume).", valueName: "kind"))
    var provider: String?
    @Flag(help: "Keep the shadow copies after the backup (see `shadowmover shadows`).") var keep = false
    @Option(help: ArgumentHelp("Wait for another agent's shadow copy set (`--wait` alone: wait as long as it takes).", valueName: "seconds"))
    var wait: String?
    @Option(help: ArgumentHelp("Select a writer or one of its components: WRITER or WRITER/COMPONENT (repeatable; default all).", valueName: "name"))
    var select: [String] = []
    @Option(help: "Freeze→thaw limit per writer, in seconds.") var freezeTimeout: Double = 60
    @Option(help: "Provider commit limit for the whole set, in seconds.") var commitTimeout: Double = 10
    @Option(help: "Retries after retryable writer failures.") var retries = 3
    @Option(help: "First back-off between retries, in seconds (doubles each time).") var retryBackoff: Double = 1

    /// Checked when the command line is parsed, so a bad limit fails before anything is opened.
    func validate() throws { _ = try coordinatorOptions() }

    func coordinatorOptions() throws -> CoordinatorOptions {
        var o = CoordinatorOptions()
        if let provider {
            guard let kind = ProviderKind(rawValue: provider), kind != .none else {
                throw ValidationError("unknown provider '\(provider)': choose btrfs, reflink or copy (or --no-shadow-copy)")
            }
            o.provider = kind
        }
        o.keep = keep
        if let wait {
            guard
                let duration = wait == "forever"
                    ? .seconds(CoordinatorOptions.longestSeconds) : Double(wait).flatMap({ CoordinatorOptions.duration(seconds: $0) })
            else {
                throw ValidationError(
                    "--wait takes a number of seconds from 0 to \(Int(CoordinatorOptions.longestSeconds)) (a year), or forever; not '\(wait)'")
            }
            o.wait = duration
        }
        o.selection = select.isEmpty ? nil : select
        func seconds(_ value: Double, _ option: String, positive: Bool) throws -> Duration {
            guard !positive || value > 0, let duration = CoordinatorOptions.duration(seconds: value) else {
                let longest = Int(CoordinatorOptions.longestSeconds)
                throw ValidationError("\(option) takes a number of seconds \(positive ? "above" : "from") 0 up to \(longest) (a year), not \(value)")
            }
            return duration
        }
        guard retries >= 0 else { throw ValidationError("--retries cannot be negative, not \(retries)") }
        o.freezeTimeout = try seconds(freezeTimeout, "--freeze-timeout", positive: true)
        o.commitTimeout = try seconds(commitTimeout, "--commit-timeout", positive: true)
        o.retries = retries
        o.retryBackoff = try seconds(retryBackoff, "--retry-backoff", positive: false)
        return o
    }
}
