import ArgumentParser
import Foundation

struct BenchThroughput: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "throughput",
        abstract: "Back up PATH into a scratch store (first, then --force: every chunk known), restore and check it, and report MB/s and peak memory.",
        discussion: """
            Each phase runs as a child process of this binary, so its peak memory is its own, and starts \
            after a sync, so the last phase's writeback is not on its time; a restore is timed until its \
            data is written out (a sync after it). The page cache is warmed by reading PATH once first. \
            By default an encrypted store and one without encryption are measured side by side, \
            alternating round by round, and the medians compared: the cost of encryption on the data \
            path. The encrypted store is opened with a key file; what a password adds (scrypt, once per \
            command) is measured apart. Instead of PATH, --shape generates a tree in the scratch directory \
            (`bench generate`): small-files (100,000 files of 0–16 KiB) or large-file (one 4 GiB file). \
            Build with -c release before measuring.
            """)

    @OptionGroup var output: OutputOptions
    @Argument(help: "Directory to back up (or --shape).") var path: String?
    @Option(help: "Instead of PATH, a generated tree: small-files or large-file.") var shape: BenchGenerate.Shape?
    @Option(help: "Scratch directory for the store and the restore (default: a temporary directory).") var scratch: String?
    @Option(help: "Codec (default: the store default, zstd:1).") var codec: String?
    @Option(help: "Workers (default: one per core).") var workers: Int?
    @Option(help: "Stores to measure: encrypted, plain, or both (side by side).") var encryption = "both"
    @Option(help: "Rounds; with both kinds of store they alternate, and medians are reported.") var rounds = 1

    struct Phase: Encodable {
        var store: String
        var name: String
        var seconds: Double
        var megabytesPerSecond: Double
        var peakMemoryMB: Double
        var cpuPercent: Double
    }

    func run() throws {
        let kinds: [String] =
            switch encryption {
            case "both": ["encrypted", "plain"]
            case "encrypted", "plain": [encryption]
            default: throw ValidationError("--encryption takes encrypted, plain or both")
            }
        guard rounds >= 1 else { throw ValidationError("--rounds takes a positive number") }
        guard (path == nil) != (shape == nil) else { throw ValidationError("name a directory to back up, or a --shape to generate (not both)") }
        let base = scratch ?? NSTemporaryDirectory() + "/shadowmover-throughput-\(getpid())"
        try? FileManager.default.removeItem(atPath: base)
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let path =
            try path
            ?? {
                let generated = base + "/" + shape!.rawValue
                _ = try Self.child(["bench", "generate", shape!.rawValue, generated])
                return generated
            }()
        // A throw-away password for the one store opened with a password (the KDF's cost).
        setenv("SHADOWMOVER_PASSWORD", "bench-\(UInt64.random(in: 0...UInt64.max))", 1)
        let kdf = try passwordOpenSeconds(in: base)
        let bytes = Self.warm(path)
        var runs: [String: [[Phase]]] = [:]
        for round in 0..<rounds {
            for kind in round % 2 == 0 ? kinds : kinds.reversed() {
                runs[kind, default: []].append(try measure(kind, path: path, bytes: bytes, in: base))
            }
        }
        // The median run of each phase.
        let phaseCount = runs[kinds[0]]![0].count
        let phases: [Phase] = kinds.flatMap { kind in
            (0..<phaseCount).map { i in runs[kind]!.map { $0[i] }.sorted { $0.megabytesPerSecond < $1.megabytesPerSecond }[runs[kind]!.count / 2] }
        }
        if output.json {
            struct Report: Encodable { var path: String; var bytes: Int64; var rounds: Int; var passwordOpenSeconds: Double; var phases: [Phase] }
            try Output.json(Report(path: path, bytes: bytes, rounds: rounds, passwordOpenSeconds: kdf, phases: phases))
        } else {
            Output.line("\(path): \(Output.bytes(bytes)), \(rounds) round(s)\(rounds > 1 ? ", medians" : "")")
            Output.table(
                ["store", "phase", "seconds", "MB/s", "peak MiB", "CPU %"],
                phases.map {
                    [
                        $0.store, $0.name, String(format: "%.2f", $0.seconds), String(format: "%.1f", $0.megabytesPerSecond),
                        String(format: "%.1f", $0.peakMemoryMB), String(format: "%.0f", $0.cpuPercent),
                    ]
                })
            Output.line(String(format: "opening an encrypted store with a password (scrypt, 64 MiB) adds %.0f ms to every command", kdf * 1000))
            if kinds.count == 2 {
                for i in 0..<phaseCount {
                    Output.line(
                        String(
                            format: "%@: encrypted at %.0f%% of plain", phases[i].name,
                            100 * phases[i].megabytesPerSecond / phases[phaseCount + i].megabytesPerSecond))
                }
            }
        }
    }

    /// One store of `kind`: first backup, forced re-read, restore, check --read-data.
    private func measure(_ kind: String, path: String, bytes: Int64, in base: String) throws -> [Phase] {
        let store = base + "/store", target = base + "/restore"
        defer {
            try? FileManager.default.removeItem(atPath: store)
            try? FileManager.default.removeItem(atPath: target)
        }
        let key = kind == "plain" ? [] : ["--key-file", base + "/bench.key"]
        defer { unlink(base + "/bench.key") }
        var common = ["--store", store] + key
        if let codec { common += ["--codec", codec] }
        if let workers { common += ["--workers", "\(workers)"] }
        _ = try Self.child(["init", "--store", store] + (kind == "plain" ? ["--no-encryption"] : key))
        var phases: [Phase] = []
        let backupArgs = ["backup", "--no-shadow-copy"] + common + [path]
        for (name, args) in [
            ("backup (first)", backupArgs), ("backup --force (all known)", backupArgs + ["--force"]),
            ("restore", ["restore", "latest", "--store", store, "--target", target] + key + (workers.map { ["--workers", "\($0)"] } ?? [])),
            ("check --read-data", ["check", "--read-data", "--store", store] + key + (workers.map { ["--workers", "\($0)"] } ?? [])),
        ] {
            let r = try Self.child(args, writtenOut: name == "restore")
            phases.append(
                Phase(
                    store: kind, name: name, seconds: r.seconds, megabytesPerSecond: Double(bytes) / r.seconds / 1e6, peakMemoryMB: r.peakKB / 1024,
                    cpuPercent: r.cpu * 100))
        }
        return phases
    }

    /// How long opening an (empty) encrypted store with a password takes, less opening one with a key
    /// file: the memory-hard KDF, paid once per command. The median of three.
    private func passwordOpenSeconds(in base: String) throws -> Double {
        let withPassword = base + "/kdf-password", withKey = base + "/kdf-key"
        defer {
            try? FileManager.default.removeItem(atPath: withPassword)
            try? FileManager.default.removeItem(atPath: withKey)
            unlink(base + "/kdf.key")
        }
        _ = try Self.child(["init", "--store", withPassword])
        _ = try Self.child(["init", "--store", withKey, "--key-file", base + "/kdf.key"])
        let times = try (0..<3).map { _ in
            try Self.child(["snapshots", "--store", withPassword]).seconds
                - Self.child(["snapshots", "--store", withKey, "--key-file", base + "/kdf.key"]).seconds
        }
        return times.sorted()[1]
    }

    /// Reads every regular file once (hot cache) and returns the total size.
    static func warm(_ path: String) -> Int64 {
        var total: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        let e = FileManager.default.enumerator(atPath: path)
        while let rel = e?.nextObject() as? String {
            let full = path + "/" + rel
            var st = stat()
            guard lstat(full, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            total += Int64(st.st_size)
            let fd = open(full, O_RDONLY)
            if fd >= 0 {
                while read(fd, &buffer, buffer.count) > 0 {}
                close(fd)
            }
        }
        return total
    }

    /// Runs this binary with `args`; returns wall time, peak RSS (KiB) and CPU share. With `writtenOut`
    /// the time runs on until what it wrote is on the device (a sync after it), as a restore's should.
    static func child(_ args: [String], writtenOut: Bool = false) throws -> (seconds: Double, peakKB: Double, cpu: Double) {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).path
        var pid: pid_t = 0
        let argv = ([me] + args).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        // What the last phase left dirty is written out first, not on this phase's time and cores.
        sync()
        let start = ContinuousClock.now
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        guard posix_spawn(&pid, me, &actions, nil, argv, environ) == 0 else { throw ValidationError("cannot run \(me)") }
        var status: Int32 = 0
        var usage = rusage()
        wait4(pid, &status, 0, &usage)
        if writtenOut { sync() }
        let seconds = (ContinuousClock.now - start).milliseconds / 1000
        guard status == 0 else { throw ValidationError("\(args.joined(separator: " ")) failed (status \(status))") }
        let cpu =
            (Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6)
            / seconds
        return (seconds, Double(usage.ru_maxrss), cpu)
    }
}
