import ChunkStore
import Foundation
import Testing

@testable import ObjectStorage

/// Restore's look-ahead on object storage (`ReadAhead`), over objects held in memory: what it fetches,
/// what it hands out, and that a failed fetch or a full budget only sends reads back to the bucket.
@Suite("S3 read-ahead")
struct ReadAheadTests {
    /// Objects of random bytes, and a record of the ranges fetched from them.
    final class Objects: @unchecked Sendable {
        let bytes: [String: [UInt8]]
        private let lock = NSLock()
        private var fetched: [(String, Range<Int>)] = []
        var failing: Set<String> = []

        init(_ sizes: [String: Int]) {
            var bytes: [String: [UInt8]] = [:]
            for (i, key) in sizes.keys.sorted().enumerated() { bytes[key] = randomBytes(sizes[key]!, seed: UInt64(i + 1) << 20) }
            self.bytes = bytes
        }

        var fetches: [(String, Range<Int>)] { lock.withLock { fetched } }

        func fetch(_ key: String, _ offset: Int, _ buffer: UnsafeMutableRawBufferPointer) throws -> Int {
            if failing.contains(key) { throw StoreError.missingObject(key) }
            let object = bytes[key]!
            let n = max(0, min(buffer.count, object.count - offset))
            object.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
            lock.withLock { fetched.append((key, offset..<offset + buffer.count)) }
            return n
        }
    }

    /// Reads `range` of `key` through `readAhead`: the bytes, or nil when it has none for them.
    func read(_ readAhead: ReadAhead, _ key: String, _ range: Range<Int>) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: range.count)
        let n = out.withUnsafeMutableBytes { readAhead.read(key, at: range.lowerBound, into: $0) }
        return n.map { Array(out[..<$0]) }
    }

    @Test("neighbouring blobs share one GET, a piece serves every read in it, and reads of the next hints find it too")
    func sharedPieces() throws {
        let objects = Objects(["a": 20 << 20, "b": 3 << 20])
        let readAhead = ReadAhead(budget: 64 << 20, fetchers: 2, fetch: objects.fetch)
        // Blobs all over pack a (an encrypted store shuffles them), hinted by two parts, and one of pack b.
        let first = [0..<300_000, 3_000_000..<3_400_000]  // 2.7 MB apart: one GET, the bytes between included
        let second = [1_000_000..<1_200_000, 9_000_000..<9_100_000, 12_000_000..<12_500_000]  // the first inside that GET
        readAhead.add("a", ranges: first)
        readAhead.add("a", ranges: second)
        readAhead.add("b", ranges: [1000..<2000])
        for blob in first + second { #expect(read(readAhead, "a", blob) == Array(objects.bytes["a"]![blob]), "\(blob)") }
        #expect(read(readAhead, "b", 1000..<2000) == Array(objects.bytes["b"]![1000..<2000]))
        // Three GETs in all, each of its piece's bytes only, and nothing fetched twice.
        let fetched = objects.fetches.sorted { ($0.0, $0.1.lowerBound) < ($1.0, $1.1.lowerBound) }
        #expect(fetched.map(\.1) == [0..<3_400_000, 9_000_000..<12_500_000, 1000..<2000], "\(fetched)")
        let fetchedOfA = objects.fetches.filter { $0.0 == "a" }.map(\.1)
        for (i, r) in fetchedOfA.enumerated() {
            for other in fetchedOfA[(i + 1)...] { #expect(!r.overlaps(other), "\(r) and \(other) overlap") }
        }
        // Bytes no hint named are not held: the caller reads them itself.
        #expect(read(readAhead, "b", 0..<10) == nil)
    }

    @Test("a fetch that fails sends its reads to the bucket; a hint beyond the budget is left to the reads; the object's end is honoured")
    func failuresAndBudget() throws {
        let objects = Objects(["gone": 1 << 20, "big": 40 << 20, "short": 100_000])
        objects.failing = ["gone"]
        let readAhead = ReadAhead(budget: 8 << 20, fetchers: 3, fetch: objects.fetch)
        readAhead.add("gone", ranges: [0..<1000])
        #expect(read(readAhead, "gone", 0..<1000) == nil)
        // 40 MiB of blobs one after another: pieces of at most 32 MiB, and only 8 MiB of them fit.
        let start = Date()
        readAhead.add("big", ranges: [0..<(6 << 20), (6 << 20)..<(40 << 20)])
        #expect(Date().timeIntervalSince(start) < 5, "a hint waits for room a second at most")
        #expect(read(readAhead, "big", 0..<(6 << 20)) == Array(objects.bytes["big"]![0..<(6 << 20)]))
        #expect(read(readAhead, "big", (39 << 20)..<(40 << 20)) == nil)
        // A range past the object's end (a truncated pack): the bytes there are, as a GET gives them.
        readAhead.add("short", ranges: [90_000..<110_000])
        #expect(read(readAhead, "short", 90_000..<110_000) == Array(objects.bytes["short"]![90_000...]))
    }

    @Test("many readers at once get the right bytes while pieces come and go")
    func concurrentReaders() async throws {
        let objects = Objects(Dictionary(uniqueKeysWithValues: (0..<12).map { ("p\($0)", 6 << 20) }))
        let readAhead = ReadAhead(budget: 16 << 20, fetchers: 4, fetch: objects.fetch)
        let blobs = (0..<12).flatMap { p in stride(from: 0, to: 6 << 20, by: 512 << 10).map { ("p\(p)", $0..<$0 + (512 << 10)) } }
        let planner = Thread {
            for p in 0..<12 { readAhead.add("p\(p)", ranges: blobs.filter { $0.0 == "p\(p)" }.map(\.1)) }
        }
        planner.start()
        let wrong = await withTaskGroup(of: Int.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var wrong = 0
                    for (i, (key, range)) in blobs.enumerated() where i % 4 == worker {
                        var out = [UInt8](repeating: 0, count: range.count)
                        let n = out.withUnsafeMutableBytes { readAhead.read(key, at: range.lowerBound, into: $0) }
                        if n == nil { _ = out.withUnsafeMutableBytes { try? objects.fetch(key, range.lowerBound, $0) } }
                        if out != Array(objects.bytes[key]![range]) { wrong += 1 }
                    }
                    return wrong
                }
            }
            return await group.reduce(0, +)
        }
        #expect(wrong == 0)
    }
}
