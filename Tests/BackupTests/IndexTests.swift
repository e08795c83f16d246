import Foundation
import Testing

@testable import ChunkStore

/// The index's merge machinery (compaction, prune's index rewrite) and prune's live set.
@Suite("index segments and the live set")
struct IndexTests {
    static func id(_ n: UInt64) -> ChunkID { ChunkID(w0: n &* 0x9E37_79B9_7F4A_7C15, w1: n, w2: ~n, w3: 7) }

    static func location(_ n: UInt64, pack: ChunkID, offset: UInt32 = 0) -> BlobLocation {
        BlobLocation(pack: pack, entry: BlobEntry(id: id(n), type: .data, codec: .none, offset: offset, storedLength: 100, rawLength: 100))
    }

    static func segment(_ locations: [BlobLocation], in directory: String) throws -> IndexSegment {
        let (name, bytes) = IndexSegment.encode(locations)
        write("\(directory)/\(name)", bytes)
        return try IndexSegment(path: "\(directory)/\(name)", name: name)
    }

    @Test("a merged segment keeps the newest entry of each id, and only the ids the filter keeps, with only their packs")
    func mergeNewestWins() throws {
        let scratch = Scratch("index")
        let (p1, p2, p3) = (ChunkID.random(), ChunkID.random(), ChunkID.random())
        let older = try Self.segment((0..<1000).map { Self.location($0, pack: p1, offset: UInt32($0)) }, in: scratch.path)
        let newer = try Self.segment((500..<1500).map { Self.location($0, pack: p2, offset: UInt32($0)) }, in: scratch.path)
        let unrelated = try Self.segment([Self.location(5000, pack: p3)], in: scratch.path)

        let all = try #require(try IndexSegment.writeMerged([older, newer, unrelated], into: scratch.path))
        #expect(all.count == 1501)
        let merged = try IndexSegment(path: scratch.sub(all.name), name: all.name)
        #expect(merged.lookup(Self.id(10))?.pack == p1)
        #expect(merged.lookup(Self.id(700))?.pack == p2)
        #expect(merged.lookup(Self.id(700))?.entry.offset == 700)
        #expect(merged.lookup(Self.id(1499))?.pack == p2)
        #expect(merged.lookup(Self.id(5000))?.pack == p3)
        #expect(merged.lookup(Self.id(2000)) == nil)

        // Keep the multiples of 7 below 1000 that the newer segment also has: one pack left.
        let keep = Set((500..<1000).filter { $0 % 7 == 0 }.map { Self.id(UInt64($0)) })
        var asked: [ChunkID] = []
        let some = try #require(
            try IndexSegment.writeMerged([older, newer, unrelated], into: scratch.path) {
                asked = []  // each pass makes a new filter
                return { id in
                    asked.append(id); return keep.contains(id)
                }
            })
        #expect(some.count == keep.count)
        #expect(asked.count == 1501 && asked == asked.sorted(), "the filter sees every id, ascending")
        let filtered = try IndexSegment(path: scratch.sub(some.name), name: some.name)
        #expect(filtered.packs == [p2])
        for id in keep { #expect(filtered.lookup(id)?.pack == p2) }

        #expect(try IndexSegment.writeMerged([older], into: scratch.path) { { _ in false } } == nil)
    }

    @Test("backups past the segment limit compact the index into one segment that finds every blob")
    func compaction() throws {
        let scratch = Scratch("compaction")
        let source = scratch.sub("source")
        mkdirs(source)
        let store = try Store.initialize(at: scratch.sub("store"), parameters: smallChunks)
        for round in 0...Store.maximumIndexSegments {
            write(source + "/f\(round)", randomBytes(40_000, seed: UInt64(round) << 8))
            _ = try backup(store, [source], workers: 1)
        }
        let reopened = try Store(path: store.path)
        #expect(reopened.index.segments.count == 1)
        #expect(try FileIO.list(store.path + "/index").count == 1)
        let everything = reopened.index.lookupEveryEntry()
        #expect(everything.found == everything.lookups)
        #expect(try CLI.run(["check", "--read-data", "--store", store.path]).code == 0)
    }

    @Test("the live set holds each id once (by its first 128 bits), refuses past its limit, and sorts in place (the zero id included)")
    func liveSet() throws {
        let ids = (0..<20_000).map { _ in ChunkID.random() } + [ChunkID(w0: 0, w1: 0, w2: 0, w3: 0)]
        let set = LiveSet(limit: ids.count)
        for id in ids { #expect(set.insert(id) == true) }
        for id in ids.prefix(100) { #expect(set.insert(id) == false) }
        #expect(set.insert(ChunkID(w0: ids[7].w0, w1: ids[7].w1, w2: ~ids[7].w2, w3: 1)) == false, "keys are 128 bits")
        #expect(set.insert(ChunkID.random()) == nil, "one id more than the index holds")
        set.sort()
        #expect(set.count == ids.count)
        let sorted = ids.sorted()
        #expect((0..<set.count).allSatisfy { set[$0] == LiveSet.Key(sorted[$0]) })
        #expect(set.index(of: sorted[1234]) == 1234)
        #expect(set.index(of: ChunkID.random()) == nil)
        let filter = set.ascendingFilter()
        #expect(filter(sorted[0]) && !filter(ChunkID(w0: sorted[5].w0, w1: sorted[5].w1 &+ 1, w2: 0, w3: 0)) && filter(sorted[9]))
    }
}
