import Benchmark
import ChunkStore
import Chunking
import Compression
import DataMover
import Foundation

/// Each benchmark processes `corpusSize` bytes per iteration and records MB/s (10^6 bytes per second)
/// as a custom metric, so stages compare directly with DESIGN.md §5's per-core budget.
let corpusSize = 64 << 20
let mbPerSecond = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)

func corpus(compressible: Bool) -> [UInt8] {
    var x: UInt64 = 0x9E37_79B9_7F4A_7C15
    var out = [UInt8](repeating: 0, count: corpusSize)
    if compressible {
        // Machine-code-like: repeated words with variation, compresses about 3× with zstd -1.
        let words = ["mov", "rax", "call", "ret", "push", "0x0000", "lea", "jmp", "  ", "\n", "rbp", "cmp"].map { Array($0.utf8) }
        var i = 0
        while i < corpusSize {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            for b in words[Int(x % 12)] where i < corpusSize {
                out[i] = b
                i += 1
            }
        }
    } else {
        for i in stride(from: 0, to: corpusSize, by: 8) {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            withUnsafeBytes(of: x) { for k in 0..<8 { out[i + k] = $0[k] } }
        }
    }
    return out
}

func measure(_ benchmark: Benchmark, _ body: () throws -> Void) rethrows {
    for _ in benchmark.scaledIterations {
        let start = ContinuousClock.now
        try body()
        let d = ContinuousClock.now - start
        let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        benchmark.measurement(mbPerSecond, Int(Double(corpusSize) / seconds / 1e6))
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, mbPerSecond], maxDuration: .seconds(3), maxIterations: 20)
    let random = corpus(compressible: false)
    let text = corpus(compressible: true)

    Benchmark("FastCDC 2020, avg 1 MiB, level 2") { benchmark in
        let chunker = FastCDC(parameters: .default)
        measure(benchmark) { random.withUnsafeBytes { blackHole(chunker.chunks(of: $0)) } }
    }
    Benchmark("FastCDC 2020, avg 64 KiB, level 2") { benchmark in
        let chunker = FastCDC(parameters: ChunkerParameters(minSize: 16 << 10, averageSize: 64 << 10, maxSize: 256 << 10, normalization: 2))
        measure(benchmark) { random.withUnsafeBytes { blackHole(chunker.chunks(of: $0)) } }
    }
    Benchmark("SHA-256 (1 MiB blocks)") { benchmark in
        measure(benchmark) {
            random.withUnsafeBytes { all in
                for o in stride(from: 0, to: all.count, by: 1 << 20) {
                    blackHole(ChunkID(hashing: UnsafeRawBufferPointer(rebasing: all[o..<min(all.count, o + (1 << 20))])))
                }
            }
        }
    }
    // What backup, restore and check do where they have two chunks at hand (BlobHash.ids, SHA-NI).
    Benchmark("SHA-256, two blocks at once (1 MiB blocks)") { benchmark in
        measure(benchmark) {
            random.withUnsafeBytes { all in
                for o in stride(from: 0, to: all.count - (1 << 20), by: 2 << 20) {
                    let a = UnsafeRawBufferPointer(rebasing: all[o..<(o + (1 << 20))])
                    let b = UnsafeRawBufferPointer(rebasing: all[(o + (1 << 20))..<min(all.count, o + (2 << 20))])
                    blackHole(BlobHash.sha256.ids([a, b]))
                }
            }
        }
    }
    Benchmark("HMAC-SHA-256 blob ids, encrypted store (1 MiB blocks)") { benchmark in
        let cipher = StoreCipher.randomKey()
        measure(benchmark) {
            random.withUnsafeBytes { all in
                for o in stride(from: 0, to: all.count, by: 1 << 20) {
                    blackHole(cipher.blobID(UnsafeRawBufferPointer(rebasing: all[o..<min(all.count, o + (1 << 20))])))
                }
            }
        }
    }
    // "seal then open" minus "seal" is the cost of opening (restore, check --read-data).
    for direction in ["seal", "seal then open"] {
        Benchmark("AES-256-GCM blob \(direction), encrypted store (1 MiB blobs, a pack key per 16)") { benchmark in
            let cipher = StoreCipher.randomKey()
            let block = UnsafeMutableRawBufferPointer.allocate(byteCount: (1 << 20) + StoreCipher.tagLength, alignment: 64)
            defer { block.deallocate() }
            // The blobs' ids, computed before the clock starts: only sealing (and opening) is timed.
            let ids = random.withUnsafeBytes { all in
                stride(from: 0, to: all.count, by: 1 << 20).map { cipher.blobID(UnsafeRawBufferPointer(rebasing: all[$0..<($0 + (1 << 20))])) }
            }
            measure(benchmark) {
                random.withUnsafeBytes { all in
                    var pack = ChunkID.random()
                    var keys = cipher.packKeys(pack)
                    for (n, o) in stride(from: 0, to: all.count, by: 1 << 20).enumerated() {
                        if n % 16 == 0 {
                            pack = ChunkID.random()
                            keys = cipher.packKeys(pack)
                        }
                        let chunk = UnsafeRawBufferPointer(rebasing: all[o..<(o + (1 << 20))])
                        block.copyMemory(from: chunk)
                        let entry = BlobEntry(id: ids[n], type: .data, codec: .none, offset: 0, storedLength: 0, rawLength: 1 << 20)
                        let sealed = cipher.sealBlob(block, length: 1 << 20, keys: keys, entry: entry)
                        if direction != "seal" {
                            blackHole(try! cipher.openBlob(UnsafeRawBufferPointer(rebasing: block[..<sealed]), pack: pack, entry: entry) { $0.count })
                        }
                    }
                }
            }
        }
    }
    for codec in [Codec.lz4, .zstd(level: 1), .zstd(level: 3), .zstd(level: -3), .zlib(level: 1)] {
        for (name, data) in [("compressible", text), ("incompressible", random)] {
            Benchmark("compress \(codec) \(name)") { benchmark in
                let c = Compressor(codec: codec)
                let out = UnsafeMutableRawBufferPointer.allocate(byteCount: Compressor.bound(1 << 20), alignment: 64)
                defer { out.deallocate() }
                measure(benchmark) {
                    data.withUnsafeBytes { all in
                        for o in stride(from: 0, to: all.count, by: 1 << 20) {
                            blackHole(c.compress(UnsafeRawBufferPointer(rebasing: all[o..<min(all.count, o + (1 << 20))]), into: out))
                        }
                    }
                }
            }
        }
    }
    Benchmark("pipeline: backup of a generated corpus (64 MiB mixed, new store each time)") { benchmark in
        let base = NSTemporaryDirectory() + "/shadowmover-bench-\(getpid())"
        let source = base + "/source"
        try? FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: source + "/text", contents: Data(text[..<(corpusSize / 2)]))
        FileManager.default.createFile(atPath: source + "/random", contents: Data(random[..<(corpusSize / 2)]))
        defer { try? FileManager.default.removeItem(atPath: base) }
        try measure(benchmark) {
            let storePath = base + "/store-\(UUID().uuidString)"
            let store = try Store.initialize(at: storePath)
            var options = BackupOptions(paths: [source])
            options.force = true
            blackHole(try Backup(store: store, options: options).run())
            try? FileManager.default.removeItem(atPath: storePath)
        }
    }
}
