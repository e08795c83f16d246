import ChunkStore
import Chunking
import Compression
import Foundation
import ShadowCopy

/// A backup-to-disk job (docs/JOBS.md): what to back up, with which writers and provider, into which
/// store, and what to keep. Parsed from a TOML file; `validate` reports every mistake with its line.
public struct JobFile: Sendable {
    /// The job's name (default: the file's name).
    public var name: String
    /// The store, as `--store` takes it.
    public var store = ""
    /// A file of `AWS_ACCESS_KEY_ID=…` / `AWS_SECRET_ACCESS_KEY=…` lines for an S3 store (the job file
    /// never holds keys itself).
    public var credentialsFile: String?
    /// Where an encrypted store's password comes from: a file, or a command that prints it (the job file
    /// never holds the password itself).
    public var passwordFile: String?
    /// A command printing the store's password.
    public var passwordCommand: String?
    /// Absolute paths to back up.
    public var sources: [String] = []
    /// Paths or globs left out.
    public var excludes: [String] = []
    /// The codec (default: the store's).
    public var codec: Codec?
    /// Stay on the filesystems of the sources.
    public var oneFileSystem = false
    /// The chunker of a store the job creates.
    public var chunker = ChunkerParameters.default
    /// The writers that take part.
    public var discovery = WriterDiscovery()
    /// How the shadow copy session runs.
    public var coordinator = CoordinatorOptions()
    /// False: read live files, no writers.
    public var useShadowCopy = true
    /// Which snapshots to keep after each run.
    public var retention = RetentionPolicy()
    /// Prune after forgetting.
    public var prune = false

    /// The store's password source: the job's file or command, else the environment's.
    public var secret: SecretSource { SecretSource(passwordFile: passwordFile, passwordCommand: passwordCommand) }

    /// Every key a job file may hold, with the kind of value it takes.
    static let schema: [String: String] = [
        "name": "string", "store": "string", "credentials_file": "string", "password_file": "string", "password_command": "string",
        "sources": "strings", "excludes": "strings", "codec": "string",
        "one_file_system": "bool",
        "chunker.min": "int", "chunker.avg": "int", "chunker.max": "int", "chunker.level": "int",
        "writers.directory": "string", "writers.sqlite": "strings", "writers.sqlite_probe": "string", "writers.postgres": "strings",
        "writers.exec": "strings", "writers.fsfreeze_hooks": "strings", "writers.select": "strings",
        "shadow_copy.enabled": "bool", "shadow_copy.provider": "string", "shadow_copy.freeze_timeout": "number",
        "shadow_copy.commit_timeout": "number", "shadow_copy.retries": "int", "shadow_copy.retry_backoff": "number",
        "shadow_copy.keep": "bool", "shadow_copy.wait": "number",
        "retention.keep_last": "int", "retention.keep_hourly": "int", "retention.keep_daily": "int",
        "retention.keep_weekly": "int", "retention.keep_monthly": "int", "retention.keep_yearly": "int",
        "retention.keep_tags": "strings", "retention.prune": "bool",
    ]

    /// Parses and checks a job file. - Returns: the job, or every problem found (with lines).
    public static func load(path: String) -> Result<JobFile, JobErrors> {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            return .failure(JobErrors(path: path, errors: [TOMLError(line: 0, message: "cannot read the file")]))
        }
        let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        return parse(text, name: name, path: path)
    }

    static func parse(_ text: String, name: String, path: String) -> Result<JobFile, JobErrors> {
        let (entries, syntax) = TOML.parse(text)
        var errors = syntax
        var job = JobFile(name: name)
        var lines: [String: Int] = [:]
        for entry in entries {
            lines[entry.key] = entry.line
            guard schema[entry.key] != nil else {
                let last = String(entry.key.split(separator: ".").last ?? "")
                let near = schema.keys.filter { $0.hasSuffix("." + last) || $0 == last }.sorted()
                errors.append(
                    TOMLError(
                        line: entry.line, message: "unknown key '\(entry.key)'" + (near.isEmpty ? "" : " (did you mean \(near.joined(separator: " or "))?)")))
                continue
            }
            var value = Value(entry: entry)
            job.apply(&value)
            errors += value.errors
        }
        errors += job.wholeFileProblems(lines: lines)
        return errors.isEmpty ? .success(job) : .failure(JobErrors(path: path, errors: errors.sorted { $0.line < $1.line }))
    }

    /// One entry's value read as the type its key takes; a mismatch is an error on its line.
    struct Value {
        let entry: TOMLEntry
        var errors: [TOMLError] = []
        var key: String { entry.key }
        var line: Int { entry.line }

        mutating func fail(_ message: String) { errors.append(TOMLError(line: entry.line, message: message)) }

        mutating func string() -> String? {
            if case .string(let s) = entry.value { return s }
            fail("'\(key)' takes a string, not \(entry.value)")
            return nil
        }

        mutating func strings() -> [String]? {
            if case .array(let items) = entry.value {
                var out: [String] = []
                for i in items {
                    guard case .string(let s) = i else {
                        fail("'\(key)' takes an array of strings")
                        return nil
                    }
                    out.append(s)
                }
                return out
            }
            fail("'\(key)' takes an array of strings, not \(entry.value)")
            return nil
        }

        mutating func int() -> Int? {
            if case .integer(let i) = entry.value, i >= 0 { return Int(i) }
            fail("'\(key)' takes a whole number ≥ 0, not \(entry.value)")
            return nil
        }

        /// A positive number of seconds, at most `CoordinatorOptions.longestSeconds` (a year).
        mutating func seconds() -> Duration? {
            let number: Double? =
                switch entry.value {
                case .integer(let i) where i > 0: Double(i)
                case .float(let d) where d > 0: d
                default: nil
                }
            if let number, let duration = CoordinatorOptions.duration(seconds: number) { return duration }
            fail("'\(key)' takes a positive number of seconds, at most \(Int(CoordinatorOptions.longestSeconds)) (a year), not \(entry.value)")
            return nil
        }

        mutating func bool() -> Bool? {
            if case .bool(let b) = entry.value { return b }
            fail("'\(key)' takes true or false, not \(entry.value)")
            return nil
        }
    }

    /// Sets the field a key names.
    private mutating func apply(_ e: inout Value) {
        var job = self
        defer { self = job }
        switch e.key {
        case "name": if let v = e.string() { job.name = v }
        case "store": if let v = e.string() { job.store = v }
        case "credentials_file": if let v = e.string() { job.credentialsFile = v }
        case "password_file": if let v = e.string() { job.passwordFile = v }
        case "password_command": if let v = e.string() { job.passwordCommand = v }
        case "sources": if let v = e.strings() { job.sources = v }
        case "excludes": if let v = e.strings() { job.excludes = v }
        case "codec":
            if let v = e.string() {
                do { job.codec = try Codec(parsing: v) } catch { e.fail("\(error)") }
            }
        case "one_file_system": if let v = e.bool() { job.oneFileSystem = v }
        case "chunker.min": if let v = e.int() { job.chunker.minSize = v }
        case "chunker.avg": if let v = e.int() { job.chunker.averageSize = v }
        case "chunker.max": if let v = e.int() { job.chunker.maxSize = v }
        case "chunker.level": if let v = e.int() { job.chunker.normalization = v }
        case "writers.directory": if let v = e.string() { job.discovery.directory = v }
        case "writers.sqlite": if let v = e.strings() { job.discovery.sqliteDatabases = v }
        case "writers.sqlite_probe": if let v = e.string() { job.discovery.sqliteProbe = v }
        case "writers.postgres": if let v = e.strings() { job.discovery.postgresConnections = v }
        case "writers.exec": if let v = e.strings() { job.discovery.execWriters = v }
        case "writers.fsfreeze_hooks": if let v = e.strings() { job.discovery.fsfreezeHooks = v }
        case "writers.select": if let v = e.strings() { job.coordinator.selection = v }
        case "shadow_copy.enabled": if let v = e.bool() { job.useShadowCopy = v }
        case "shadow_copy.provider":
            if let v = e.string() {
                if let p = ProviderKind(rawValue: v), p != .none {
                    job.coordinator.provider = p
                } else {
                    e.fail("provider '\(v)' is not btrfs, reflink or copy")
                }
            }
        case "shadow_copy.freeze_timeout": if let v = e.seconds() { job.coordinator.freezeTimeout = v }
        case "shadow_copy.commit_timeout": if let v = e.seconds() { job.coordinator.commitTimeout = v }
        case "shadow_copy.retries": if let v = e.int() { job.coordinator.retries = v }
        case "shadow_copy.retry_backoff": if let v = e.seconds() { job.coordinator.retryBackoff = v }
        case "shadow_copy.keep": if let v = e.bool() { job.coordinator.keep = v }
        case "shadow_copy.wait": if let v = e.seconds() { job.coordinator.wait = v }
        case "retention.keep_last": if let v = e.int() { job.retention.last = v }
        case "retention.keep_hourly": if let v = e.int() { job.retention.hourly = v }
        case "retention.keep_daily": if let v = e.int() { job.retention.daily = v }
        case "retention.keep_weekly": if let v = e.int() { job.retention.weekly = v }
        case "retention.keep_monthly": if let v = e.int() { job.retention.monthly = v }
        case "retention.keep_yearly": if let v = e.int() { job.retention.yearly = v }
        case "retention.keep_tags": if let v = e.strings() { job.retention.tags = v }
        case "retention.prune": if let v = e.bool() { job.prune = v }
        default: break
        }
    }

    /// Rules about the file as a whole, each reported at the line of a key involved (`lines`: key → line).
    private func wholeFileProblems(lines: [String: Int]) -> [TOMLError] {
        let job = self
        var errors: [TOMLError] = []
        func fail(_ line: Int, _ m: String) { errors.append(TOMLError(line: line, message: m)) }
        if job.store.isEmpty { fail(lines["store"] ?? 1, "the job names no store: add store = \"/path/to/store\"") }
        if job.sources.isEmpty && job.discovery.sqliteDatabases.isEmpty && job.discovery.postgresConnections.isEmpty && job.discovery.execWriters.isEmpty {
            fail(lines["sources"] ?? 1, "the job backs up nothing: add sources = [\"/path\"] or writers")
        }
        for s in job.sources where !s.hasPrefix("/") { fail(lines["sources"] ?? 1, "source '\(s)' must be an absolute path") }
        let hasRetention = lines.keys.contains { $0.hasPrefix("retention.keep") }
        if hasRetention && job.retention.isEmpty {
            fail(
                lines.filter { $0.key.hasPrefix("retention.") }.map(\.value).min() ?? 1,
                "every retention rule is 0: that would forget every snapshot; keep at least one")
        }
        if job.prune && !hasRetention {
            fail(
                lines["retention.prune"] ?? 1,
                "prune = true without keep_* rules: nothing is ever forgotten, so there is nothing to prune; add rules or remove prune")
        }
        if lines.keys.contains(where: { $0.hasPrefix("chunker.") }) {
            do { try job.chunker.validate() } catch { fail(lines.filter { $0.key.hasPrefix("chunker.") }.map(\.value).min() ?? 1, "\(error)") }
        }
        if !job.useShadowCopy
            && (job.coordinator.provider != nil || !job.discovery.sqliteDatabases.isEmpty || !job.discovery.postgresConnections.isEmpty
                || !job.discovery.execWriters.isEmpty)
        {
            fail(lines["shadow_copy.enabled"] ?? 1, "shadow_copy.enabled = false conflicts with writers or a provider: writers need a shadow copy session")
        }
        return errors
    }
}

/// Every problem in a job file.
public struct JobErrors: Error, CustomStringConvertible, Sendable {
    /// The job file.
    public var path: String
    /// Its problems, by line.
    public var errors: [TOMLError]
    /// Every problem as `PATH:LINE: message`.
    public var description: String {
        "\(path) has \(errors.count) problem(s):\n" + errors.map { "  \(path):\($0.line): \($0.message)" }.joined(separator: "\n")
    }
}
