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
            if wait == "forever" {
                o.wait = .seconds(365 * 24 * 3600)
            } else {
                guard let s = Double(wait), s >= 0 else { throw ValidationError("--wait takes a number of seconds") }
                o.wait = .milliseconds(Int64(s * 1000))
            }
        }
        o.selection = select.isEmpty ? nil : select
        guard freezeTimeout > 0, commitTimeout > 0, retries >= 0, retryBackoff >= 0 else {
            throw ValidationError("timeouts must be positive and retries not negative")
        }
        o.freezeTimeout = .milliseconds(Int64(freezeTimeout * 1000))
        o.commitTimeout = .milliseconds(Int64(commitTimeout * 1000))
        o.retries = retries
        o.retryBackoff = .milliseconds(Int64(retryBackoff * 1000))
        return o
    }
}
