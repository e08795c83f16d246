import Testing

@testable import Chunking

func lengths(_ chunker: FastCDC, _ data: [UInt8]) -> [Int] {
    data.withUnsafeBytes { chunker.chunks(of: $0).map(\.length) }
}

/// Feeds `data` through a ChunkStream in pieces of the sizes `nextSize` picks.
func streamedLengths(_ chunker: FastCDC, _ data: [UInt8], capacity: Int? = nil, nextSize: () -> Int) -> [Int] {
    let stream = ChunkStream(chunker: chunker, capacity: capacity)
    var result: [Int] = []
    var position = 0
    var finished = false
    data.withUnsafeBytes { all in
        while true {
            if let chunk = stream.nextChunk() {
                result.append(chunk.count)
            } else if finished {
                break
            } else if position == all.count {
                stream.finish()
                finished = true
            } else {
                let piece = min(nextSize(), all.count - position)
                let taken = stream.append(UnsafeRawBufferPointer(rebasing: all[position..<(position + piece)]))
                position += taken
            }
        }
    }
    return result
}

@Suite("FastCDC 2020")
struct FastCDCTests {
    @Test("reference gear table is MD5 of 64 bytes of each value, as published")
    func referenceGearTable() {
        let t = GearTable.reference
        #expect(t.entries[0] == 0x3b5d_3c7d_207e_37dc)
        #expect(t.entries[1] == 0x784d_68ba_9112_3086)
        #expect(t.entries[255] == 0xaabd_2b2a_4515_04e1)
        #expect(t.shifted[0] == 0x76ba_78fa_40fc_6fb8)
    }

    @Test("unkeyed cut points equal the reference implementation's", arguments: referenceVectors)
    func referenceCutPoints(_ v: Vector) throws {
        let p = ChunkerParameters(minSize: v.min, averageSize: v.avg, maxSize: v.max, normalization: v.level)
        try p.validate()
        let data = v.corpus.bytes(seed: v.seed, count: v.size)
        #expect(lengths(FastCDC(parameters: p), data) == v.lengths)
    }

    @Test("cut points do not depend on how the input is split into buffers", arguments: [false, true])
    func bufferSplitInvariance(keyed: Bool) {
        let p = ChunkerParameters(minSize: 2048, averageSize: 8192, maxSize: 32768, normalization: 2)
        let table = keyed ? GearTable(seed: Array(repeating: 7, count: 32)) : .reference
        let chunker = FastCDC(parameters: p, table: table)
        let data = Corpus.random.bytes(seed: 99, count: 3 << 20) + Corpus.text.bytes(seed: 5, count: 1 << 20)
        let whole = lengths(chunker, data)
        var rng = SplitMix(seed: keyed ? 1 : 2)
        for round in 0..<6 {
            let maxPiece = [1, 7, 100, 4096, 65536, 1 << 20][round]
            let streamed = streamedLengths(chunker, data) { Int(rng.next() % UInt64(maxPiece)) + 1 }
            #expect(streamed == whole, "pieces of up to \(maxPiece) bytes")
        }
        #expect(whole.reduce(0, +) == data.count)
    }

    @Test("a stream that ends below, at or just past each size limit cuts as the whole buffer does")
    func streamEndsNearLimits() {
        let p = ChunkerParameters(minSize: 2048, averageSize: 8192, maxSize: 32768, normalization: 2)
        let chunker = FastCDC(parameters: p)
        // Text has few cut points, so chunks run to the average and maximum sizes and the stream's end
        // falls inside a search that has already scanned part of a chunk.
        let data = Corpus.text.bytes(seed: 11, count: 200_000)
        let limits = [1, p.minSize, p.averageSize, p.maxSize, 2 * p.maxSize + p.averageSize]
        let lengthsToTry = limits.flatMap { [$0 - 1, $0, $0 + 1, $0 + 2, $0 + 777] }.filter { $0 > 0 }
        var rng = SplitMix(seed: 3)
        for count in lengthsToTry {
            let piece = Array(data[..<count])
            let whole = lengths(chunker, piece)
            #expect(streamedLengths(chunker, piece) { Int(rng.next() % 3000) + 1 } == whole, "\(count) bytes")
            #expect(streamedLengths(chunker, piece) { 1 } == whole, "\(count) bytes, one at a time")
        }
    }

    @Test("the search in two interleaved hash chains finds the cut point, or the end state, of the search in one")
    func twoChainsAsOne() {
        let data = Corpus.random.bytes(seed: 21, count: 1 << 17) + Corpus.text.bytes(seed: 22, count: 1 << 17)
        let table = GearTable.reference
        var rng = SplitMix(seed: 23)
        data.withUnsafeBufferPointer { bytes in
            table.entries.withUnsafeBufferPointer { gear in
                table.shifted.withUnsafeBufferPointer { shifted in
                    var found = (a: 0, b: 0, none: 0)
                    for _ in 0..<3000 {
                        let first = Int(rng.next() % 64)
                        let start = first + Int(rng.next() % 300)
                        let limit = min(start + Int(rng.next() % 30_000), bytes.count / 2)
                        // 4 to 19 random bits below bit 48: cut points from every few bytes to none at all.
                        var mask: UInt64 = 0
                        for _ in 0..<(4 + rng.next() % 16) { mask |= 1 << (rng.next() % 48) }
                        let search = FastCDC.GearSearch(
                            bytes: bytes.baseAddress!, gear: gear.baseAddress!, shifted: shifted.baseAddress!, first: first)
                        let hash = search.hash(from: first, to: start)
                        #expect(hash == search.hash(from: max(first, start - 32), to: start), "the hash forgets all but 32 pairs")
                        var one = FastCDC.Scan(pair: start, hash: hash), two = one
                        let serial = search.serial(&one, to: limit, mask: mask)
                        let interleaved = search.search(&two, to: limit, mask: mask)
                        #expect(interleaved == serial, "pairs \(start)..<\(limit), mask \(String(mask, radix: 16))")
                        if serial == nil { #expect(two == one) }
                        let middle = start + (limit - start) / 2
                        switch serial {
                        case nil: found.none += 1
                        case let cut? where cut < 2 * middle: found.a += 1
                        default: found.b += 1
                        }
                    }
                    // Every case happened: a cut in the first half, in the second, none.
                    #expect(found.a > 200 && found.b > 200 && found.none > 200, "\(found)")
                }
            }
        }
    }

    @Test("every chunk but the last is at least min; every chunk is at most max", arguments: [0, 1, 2, 3])
    func boundsRespected(level: Int) {
        let p = ChunkerParameters(minSize: 1024, averageSize: 4096, maxSize: 8192, normalization: level)
        let chunker = FastCDC(parameters: p)
        for data in [
            Corpus.random.bytes(seed: 11, count: 1 << 20), Corpus.text.bytes(seed: 12, count: 1 << 20),
            [UInt8](repeating: 0, count: 300_000),
        ] {
            let l = lengths(chunker, data)
            #expect(l.reduce(0, +) == data.count)
            #expect(l.dropLast().allSatisfy { $0 >= p.minSize })
            #expect(l.allSatisfy { $0 <= p.maxSize })
        }
        // All-zero input never matches a mask: every chunk is max-sized.
        let zeros = lengths(chunker, [UInt8](repeating: 0, count: 8192 * 10))
        #expect(zeros == Array(repeating: 8192, count: 10))
    }

    @Test("a keyed table changes the cut points; the same seed gives the same table")
    func keyedTables() {
        let a = GearTable(seed: Array(repeating: 1, count: 32))
        #expect(a == GearTable(seed: Array(repeating: 1, count: 32)))
        #expect(a != GearTable(seed: Array(repeating: 2, count: 32)))
        #expect(a != .reference)
        let p = ChunkerParameters(minSize: 2048, averageSize: 8192, maxSize: 32768, normalization: 2)
        let data = Corpus.random.bytes(seed: 3, count: 1 << 20)
        #expect(lengths(FastCDC(parameters: p, table: a), data) != lengths(FastCDC(parameters: p), data))
    }

    @Test("invalid parameters are refused with a message naming the setting")
    func invalidParameters() {
        #expect(throws: ChunkerParameterError.self) {
            try ChunkerParameters(minSize: 10, averageSize: 1024, maxSize: 4096, normalization: 1).validate()
        }
        #expect(throws: ChunkerParameterError.self) {
            try ChunkerParameters(minSize: 8192, averageSize: 4096, maxSize: 16384, normalization: 1).validate()
        }
        do {
            try ChunkerParameters(minSize: 1024, averageSize: 4096, maxSize: 16384, normalization: 5).validate()
            Issue.record("level 5 accepted")
        } catch {
            #expect("\(error)".contains("normalization level 5"))
        }
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
