import ArgumentParser
import Foundation

/// The generated shapes `bench throughput --shape` and tools/compare-peers.sh measure besides a real
/// tree: many small files (the metadata-bound case) and one huge file (the data-bound case). The
/// content is deterministic (a fixed seed), so two runs and two tools see the same bytes.
struct BenchGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write a benchmark tree: small-files (100,000 files in 1,000 directories) or large-file (one 4 GiB file).",
        discussion: """
            Content is mixed: runs of random bytes (incompressible) and of text-like words (compress \
            several times) a few KiB to 68 KiB long, and now and then 4–12 MiB repeated from the last \
            32 MiB (deduplicates). The 4 GiB file stores at about 1.25× dedup and 1.4× compression. \
            Deterministic: the same shape gives the same bytes on every run.
            """)

    @Argument(help: "small-files or large-file.") var shape: Shape
    @Argument(help: "Directory to create (must not exist).") var directory: String
    @Option(help: "small-files: number of files.") var files = 100_000
    @Option(help: "large-file: size (K, M, G suffixes allowed).") var size = "4G"

    enum Shape: String, ExpressibleByArgument, CaseIterable {
        case smallFiles = "small-files"
        case largeFile = "large-file"
    }

    func run() throws {
        guard !FileManager.default.fileExists(atPath: directory) else {
            throw ValidationError("\(directory) exists: name a directory to create")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        switch shape {
        case .smallFiles: try Self.smallFiles(in: directory, count: files)
        case .largeFile: try Self.largeFile(at: directory + "/large.bin", bytes: Int(try BenchFreeze.parseSize(size)))
        }
    }

    /// `count` files of 0–16 KiB (about 8 KiB on average), 100 to a directory.
    static func smallFiles(in root: String, count: Int) throws {
        var content = MixedContent(seed: 1)
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        for i in 0..<count {
            let directory = String(format: "%@/d%04d", root, i / 100)
            if i % 100 == 0 { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false) }
            let length = Int(content.next() % UInt64(buffer.count + 1))
            content.fill(&buffer, count: length)
            try write(String(format: "%@/f%05d", directory, i), buffer[..<length])
        }
    }

    /// One file of `bytes` bytes, written 1 MiB at a time.
    static func largeFile(at path: String, bytes: Int) throws {
        var content = MixedContent(seed: 2)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ValidationError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var left = bytes
        while left > 0 {
            let n = min(left, buffer.count)
            content.fill(&buffer, count: n)
            guard buffer.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress!, n) }) == n else {
                throw ValidationError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            left -= n
        }
    }

    private static func write(_ path: String, _ bytes: ArraySlice<UInt8>) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ValidationError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw ValidationError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// Deterministic mixed content, in runs: random bytes and text-like words (runs of 4–68 KiB, mixed
/// finely, so most chunks hold both), and now and then 4–12 MiB repeated from the last 32 MiB written
/// (whole chunks that deduplicate).
struct MixedContent {
    private var state: UInt64
    private static let ringSize = 32 << 20
    private var ring = [UInt8](repeating: 0, count: MixedContent.ringSize)  // the last 32 MiB written
    private var written = 0
    private var run: (kind: Int, left: Int, from: Int) = (0, 0, 0)
    private static let words =
        "the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there would their we him been has when who will no more if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three"
        .split(separator: " ").map { Array($0.utf8) + [32] }

    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    /// xorshift64*: fast, and the same sequence everywhere.
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    mutating func fill(_ buffer: inout [UInt8], count: Int) {
        var i = 0
        while i < count {
            if run.left == 0 {
                if written >= Self.ringSize && next() % 512 == 0 {
                    let length = (4 << 20) + Int(next() % UInt64(8 << 20))
                    let distance = length + Int(next() % UInt64(Self.ringSize - length))
                    run = (2, length, (written - distance) % Self.ringSize)
                } else {
                    run = (Int(next() % 2), 4096 + Int(next() % (64 << 10)), 0)
                }
            }
            let n = min(run.left, count - i)
            switch run.kind {
            case 0:  // random
                var j = 0
                while j < n {
                    var r = next()
                    for _ in 0..<min(8, n - j) { buffer[i + j] = UInt8(truncatingIfNeeded: r); r >>= 8; j += 1 }
                }
            case 1:  // text-like
                var j = 0
                while j < n {
                    let word = Self.words[Int(next() % UInt64(Self.words.count))]
                    for b in word where j < n { buffer[i + j] = b; j += 1 }
                }
            default:  // earlier content again
                for j in 0..<n { buffer[i + j] = ring[(run.from + j) % Self.ringSize] }
                run.from += n
            }
            for j in 0..<n { ring[(written + j) % Self.ringSize] = buffer[i + j] }
            written += n
            run.left -= n
            i += n
        }
    }
}
