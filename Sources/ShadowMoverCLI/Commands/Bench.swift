import ArgumentParser
import ChildProcess
import Foundation
import ShadowCopy

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the freeze window and throughput on this machine.", subcommands: [BenchFreeze.self, BenchThroughput.self, BenchGenerate.self])
}

struct BenchFreeze: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "freeze",
        abstract: "Freeze window of shadow copies on a loop volume of its own, with writers appending and fsyncing.",
        discussion: """
            Creates a loop-mounted volume (btrfs for --provider btrfs, XFS with reflink for reflink, ext4 \
            for copy, unless --fs says otherwise), fills it with FILES files of SIZE bytes in all, split \
            among the writers' directories, and takes REPEAT shadow copy sets while WRITERS journal writers \
            append and fsync continuously. Reports the freeze window (first freeze sent → last thaw \
            answered) and the longest write stall a writer saw. Needs root.
            """)

    @OptionGroup var output: OutputOptions
    @Option(help: "btrfs, reflink or copy.") var provider = "btrfs"
    @Option(help: "Number of data files.") var files = 1000
    @Option(help: "Total data size, bytes (K, M, G suffixes allowed).") var size = "100M"
    @Option(help: "Number of writer processes.") var writers = 2
    @Option(name: .customLong("repeat"), help: "Shadow copies to take.") var repeats = 20
    @Option(help: "Filesystem for the volume: btrfs, xfs or ext4 (default: by provider).") var fs: String?
    @Option(help: "Directory for the volume image and mount point (default: a temporary directory).") var workdir: String?

    struct Result: Encodable {
        var provider: String
        var filesystem: String
        var files: Int
        var bytes: Int64
        var writers: Int
        var repeats: Int
        var freezeWindowMs: Stats
        var commitMs: Stats
        var longestWriteStallMs: Double
        var samplesMs: [Double]
    }

    struct Stats: Encodable {
        var min: Double, median: Double, p99: Double, max: Double
        init(_ values: [Double]) {
            let s = values.sorted()
            func q(_ p: Double) -> Double { s.isEmpty ? 0 : s[Swift.min(s.count - 1, Int((Double(s.count - 1) * p).rounded(.up)))] }
            min = s.first ?? 0
            median = s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
            p99 = q(0.99)
            max = s.last ?? 0
        }
    }

    func run() throws {
        guard geteuid() == 0 else { throw ValidationError("bench freeze creates a loop volume and needs root") }
        guard let kind = ProviderKind(rawValue: provider), kind != .none else { throw ValidationError("--provider: btrfs, reflink or copy") }
        let filesystem = fs ?? ["btrfs": "btrfs", "reflink": "xfs", "copy": "ext4"][provider]!
        let bytes = try Self.parseSize(size)
        guard files > 0, writers > 0, repeats > 0 else { throw ValidationError("--files, --writers and --repeat must be positive") }
        let base = workdir ?? NSTemporaryDirectory() + "/shadowmover-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let mountPoint = base + "/volume"
        let imageMB = Swift.max(512, Int(bytes / (1 << 20)) * 3 + 512)
        try Self.volume(["create", filesystem, mountPoint, "\(imageMB)"])
        defer { _ = try? Self.volume(["remove", mountPoint]) }
        let per = try makeData(in: mountPoint, bytes: bytes)
        let (samples, commits, stall) = try measure(kind, mountPoint: mountPoint, base: base)
        let result = Result(
            provider: provider, filesystem: filesystem, files: files, bytes: Int64(per) * Int64(files), writers: writers, repeats: repeats,
            freezeWindowMs: Stats(samples), commitMs: Stats(commits), longestWriteStallMs: stall, samplesMs: samples)
        if output.json { return try Output.json(result) }
        Output.line("freeze window, \(provider) on \(filesystem), \(files) files, \(Output.bytes(result.bytes)), \(writers) writers, \(repeats) runs")
        func row(_ name: String, _ s: Stats) -> [String] { [name] + [s.min, s.median, s.p99, s.max].map { String(format: "%.2f", $0) } }
        Output.table(["", "min", "median", "p99", "max"], [row("freeze window (ms)", result.freezeWindowMs), row("provider commit (ms)", result.commitMs)])
        Output.line(String(format: "longest write stall a writer saw: %.2f ms", stall))
    }

    /// FILES files spread over the writers' directories. Random content (one pattern, each file stamped
    /// with its number): the freeze window does not depend on what the bytes are, only on how many
    /// there are. - Returns: bytes per file.
    private func makeData(in mountPoint: String, bytes: Int64) throws -> Int {
        let per = Swift.max(1, Int(bytes / Int64(files)))
        var rng = SystemRandomNumberGenerator()
        var block = [UInt8](repeating: 0, count: per)
        for j in 0..<per { block[j] = UInt8(truncatingIfNeeded: rng.next() as UInt64) }
        for i in 0..<files {
            withUnsafeBytes(of: UInt64(i)) { for (k, b) in $0.enumerated() where k < per { block[k] = b } }
            let dir = "\(mountPoint)/w\(i % writers)/data\(i / 1000)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data(block).write(to: URL(fileURLWithPath: "\(dir)/f\(i)"))
        }
        sync()
        return per
    }

    /// Takes `repeats` shadow copy sets with `writers` journal writers appending meanwhile. - Returns:
    /// the freeze windows and commit times (ms), and the longest stall a writer saw.
    private func measure(_ kind: ProviderKind, mountPoint: String, base: String) throws -> (samples: [Double], commits: [Double], stall: Double) {
        var samples: [Double] = []
        var commits: [Double] = []
        var stall = 0.0
        let me = CommandLine.arguments[0].hasPrefix("/") ? CommandLine.arguments[0] : FileManager.default.currentDirectoryPath + "/" + CommandLine.arguments[0]
        var options = CoordinatorOptions()
        options.provider = kind
        options.paths = CoordinatorPaths(runDirectory: base + "/run", stateDirectory: base + "/state")
        options.retries = 0
        for r in 0..<repeats {
            let list: [Writer] = (0..<writers).map {
                ExecWriter(executable: me, arguments: ["debug", "journal-writer", "\(mountPoint)/w\($0)", "--stats", "\(base)/stats-\($0).json"])
            }
            let session = try Coordinator(writers: list, options: options).createShadowCopySet(paths: ["\(mountPoint)/w0"])
            let window = session.report.freezeWindow
            samples.append(window?.totalMs ?? 0)
            commits.append(window?.phases.filter { $0.kind == "commit" }.map(\.durationMs).reduce(0, +) ?? 0)
            session.complete(succeeded: true)
            for w in 0..<writers {
                if let data = FileManager.default.contents(atPath: "\(base)/stats-\(w).json"),
                    let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let ms = obj["maxStallMs"] as? Double
                {
                    stall = Swift.max(stall, ms)
                }
            }
            if !output.json { FileHandle.standardError.write(Data(String(format: "\r  %d/%d  last %.2f ms", r + 1, repeats, samples.last!).utf8)) }
        }
        if !output.json { FileHandle.standardError.write(Data("\n".utf8)) }
        return (samples, commits, stall)
    }

    static func parseSize(_ text: String) throws -> Int64 {
        let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        if let last = text.uppercased().last, let unit = units[last], let n = Double(text.dropLast()) { return Int64(n * Double(unit)) }
        guard let n = Int64(text) else { throw ValidationError("bad size '\(text)': use bytes or K/M/G") }
        return n
    }

    /// Runs tools/test-volume.sh's logic (kept here so the binary needs no checkout).
    static func volume(_ args: [String]) throws {
        let script = """
            set -e
            case "$1" in
            create) mkdir -p "$3"; truncate -s "$4M" "$3.img"; dev=$(losetup --find --show "$3.img")
                case "$2" in btrfs) mkfs.btrfs -q -f "$dev" >/dev/null;; xfs) mkfs.xfs -q -f -m reflink=1 "$dev";; ext4) mkfs.ext4 -q -F "$dev";; *) echo "unknown fs $2" >&2; exit 1;; esac
                mount "$dev" "$3";;
            remove) dev=$(findmnt -n -o SOURCE --target "$2" || true); umount "$2" || umount -l "$2" || true
                case "$dev" in /dev/loop*) losetup -d "$dev" || true;; esac; rm -f "$2.img"; rmdir "$2" || true;;
            esac
            """
        guard try ChildProcess(["/bin/sh", "-c", script, "sh"] + args).wait() == 0 else {
            throw ValidationError("cannot \(args[0]) the \(args.count > 1 ? args[1] : "") loop volume (root, losetup and mkfs are needed)")
        }
    }
}
