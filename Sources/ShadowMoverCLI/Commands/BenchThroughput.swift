import ArgumentParser
import Foundation

struct BenchThroughput: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "throughput",
        abstract: "Back up PATH into a scratch store (first, then --force: every chunk known), restore it, and report MB/s and peak memory.",
        discussion: """
            Each phase runs as a child process of this binary, so its peak memory is its own. The page
            cache is warmed by reading PATH once first. Build with -c release before measuring.
            """)

    @OptionGroup var output: OutputOptions
    @Argument(help: "Directory to back up.") var path: String
    @Option(help: "Scratch directory for the store and the restore (default: a temporary directory).") var scratch: String?
    @Option(help: "Codec (default: the store default, zstd:1).") var codec: String?
    @Option(help: "Workers (default: one per core).") var workers: Int?

    struct Phase: Encodable {
        var name: String
        var seconds: Double
        var megabytesPerSecond: Double
        var peakMemoryMB: Double
        var cpuPercent: Double
    }

    func run() throws {
        let base = scratch ?? NSTemporaryDirectory() + "/shadowmover-throughput-\(getpid())"
        try? FileManager.default.removeItem(atPath: base)
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let store = base + "/store", target = base + "/restore"
        let bytes = Self.warm(path)
        var common = ["--store", store]
        if let codec { common += ["--codec", codec] }
        if let workers { common += ["--workers", "\(workers)"] }
        _ = try Self.child(["init", "--store", store])
        var phases: [Phase] = []
        let backupArgs = ["backup", "--no-shadow-copy"] + common + [path]
        for (name, args) in [("backup (first)", backupArgs), ("backup --force (all known)", backupArgs + ["--force"]),
                             ("restore", ["restore", "latest", "--store", store, "--target", target] + (workers.map { ["--workers", "\($0)"] } ?? []))] {
            let r = try Self.child(args)
            phases.append(Phase(name: name, seconds: r.seconds, megabytesPerSecond: Double(bytes) / r.seconds / 1e6, peakMemoryMB: r.peakKB / 1024, cpuPercent: r.cpu * 100))
        }
        if output.json {
            struct Report: Encodable { var path: String; var bytes: Int64; var phases: [Phase] }
            try Output.json(Report(path: path, bytes: bytes, phases: phases))
        } else {
            Output.line("\(path): \(Output.bytes(bytes))")
            Output.table(["phase", "seconds", "MB/s", "peak MiB", "CPU %"], phases.map {
                [$0.name, String(format: "%.2f", $0.seconds), String(format: "%.1f", $0.megabytesPerSecond), String(format: "%.1f", $0.peakMemoryMB), String(format: "%.0f", $0.cpuPercent)]
            })
        }
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

    /// Runs this binary with `args`; returns wall time, peak RSS (KiB) and CPU share.
    static func child(_ args: [String]) throws -> (seconds: Double, peakKB: Double, cpu: Double) {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).path
        var pid: pid_t = 0
        let argv = ([me] + args).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let start = ContinuousClock.now
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        guard posix_spawn(&pid, me, &actions, nil, argv, environ) == 0 else { throw ValidationError("cannot run \(me)") }
        var status: Int32 = 0
        var usage = rusage()
        wait4(pid, &status, 0, &usage)
        let seconds = (ContinuousClock.now - start).milliseconds / 1000
        guard status == 0 else { throw ValidationError("\(args.joined(separator: " ")) failed (status \(status))") }
        let cpu = (Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6) / seconds
        return (seconds, Double(usage.ru_maxrss), cpu)
    }
}
