import ArgumentParser
import ChunkStore
import DataMover
import Foundation
import ObjectStorage

/// The `shadowmover` command: restic-style verbs over a local chunk store.
public struct ShadowMover: ParsableCommand {
    /// The verbs and the help text.
    public static let configuration = CommandConfiguration(
        commandName: "shadowmover",
        abstract: "Application-consistent, deduplicated, compressed backups of live Linux volumes.",
        discussion: """
            Choose the store with --store PATH or the SHADOWMOVER_STORE environment variable. \
            Exit codes: 0 success, 1 failure, 3 backup completed but some files could not be read \
            (or, for restore --skip-damaged, some files could not be restored).
            """,
        version: ShadowMoverVersion.current,
        subcommands: [
            Init.self, BackupCommand.self, RestoreCommand.self, Snapshots.self, Ls.self, Find.self, Dump.self, Mount.self, Copy.self, Tag.self,
            InspectDiff.self, InspectStats.self, Check.self, Forget.self, Prune.self, Unlock.self, Key.self, Job.self, Writers.self, Shadows.self, Inspect.self,
            Repair.self, Bench.self, Debug.self,
        ]
    )

    /// The root command (ArgumentParser makes it).
    public init() {}

    /// Parses the arguments, runs the command, and exits with its code.
    public static func runMain() {
        do {
            // `--wait` without a value means: wait as long as it takes.
            // `--read-data` without a value means: every blob.
            var arguments = Array(CommandLine.arguments.dropFirst())
            for (i, a) in arguments.enumerated() where a == "--wait" || a == "--read-data" {
                let next = i + 1 < arguments.count ? arguments[i + 1] : ""
                if Double(next.replacingOccurrences(of: "%", with: "")) == nil {
                    arguments[i] = a == "--wait" ? "--wait=forever" : "--read-data=all"
                }
            }
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// Where the store is.
struct StoreOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The chunk store: a directory, or s3:http(s)://HOST:PORT/BUCKET/PREFIX (default: $SHADOWMOVER_STORE).", valueName: "location"))
    var store: String?

    @Option(
        name: .long,
        help: ArgumentHelp("Index cache of a remote store; safe to delete (default: $XDG_CACHE_HOME/shadowmover).", valueName: "path"))
    var cacheDir: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "File whose first line is the store's password (or $SHADOWMOVER_PASSWORD, $SHADOWMOVER_PASSWORD_COMMAND, or a prompt).", valueName: "file"))
    var passwordFile: String?

    @Option(
        name: .long,
        help: ArgumentHelp("Key file that opens the store instead of a password (made by `init --key-file` or `key add --new-key-file`).", valueName: "file"))
    var keyFile: String?

    @Flag(name: .long, help: "Accept an empty password (anyone can then open the store's key).")
    var insecureEmptyPassword = false

    /// Where the store's password or key file comes from.
    var secret: SecretSource {
        SecretSource(keyFile: keyFile, passwordFile: passwordFile, allowEmptyPassword: insecureEmptyPassword)
    }

    func resolvedPath() throws -> String {
        if let store, !store.isEmpty { return store }
        if let env = ProcessInfo.processInfo.environment["SHADOWMOVER_STORE"], !env.isEmpty { return env }
        throw ValidationError("no store given: pass --store PATH or set SHADOWMOVER_STORE")
    }

    func open() throws -> Store { try StoreLocation.open(try resolvedPath(), cacheDirectory: cacheDir, secret: secret) }
}

/// How often progress is reported (hidden: for tests and scripts).
struct ProgressOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Seconds between progress reports (terminal: 0.25, --json: 1).", visibility: .hidden))
    var progressInterval: Double?

    func validate() throws {
        if let seconds = progressInterval, !(seconds.isFinite && seconds > 0 && seconds <= 3600) {
            throw ValidationError("--progress-interval takes a number of seconds above 0 up to 3600, not \(seconds)")
        }
    }
}

/// Output format.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON instead of text.")
    var json = false
}
