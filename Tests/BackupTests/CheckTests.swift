import ChunkStore
import Foundation
import Testing

@Suite("check")
struct CheckTests {
    @Test("a clean store passes check and check --read-data with exit code 0")
    func clean() throws {
        let f = try Fixture()
        let structure = try f.cli(["check"])
        #expect(structure.code == 0, "\(structure.stdout)")
        #expect(structure.stdout.contains("no problems found"))
        let data = try f.cli(["check", "--read-data"])
        #expect(data.code == 0)
        #expect(data.stdout.contains("blobs read and verified"))
        #expect(try f.cli(["check", "--read-data=50%"]).code == 0)
        #expect(try f.cli(["check", "--read-data=0%"]).code != 0)
    }

    @Test("a flipped data byte is found by --read-data, naming the blob, the snapshot and the file")
    func flippedData() throws {
        let f = try Fixture()
        let victim = try f.node("sub/c").content![0]
        let location = f.store.index.lookup(victim)!
        flipByte(f.store.packPath(location.pack), at: Int(location.entry.offset) + 7)
        #expect(try f.cli(["check"]).code == 0)  // the structure is intact
        let r = try f.cli(["check", "--read-data"])
        #expect(r.code == 1)
        #expect(r.stdout.contains("blob \(victim)"))
        #expect(r.stdout.contains("\(f.snapshot.prefix(8)):\(f.source)/sub/c"))
        #expect(!r.stdout.contains("\(f.source)/a\n"))
    }

    @Test("a damaged trailer or a missing pack is found by the structure check, with the files affected")
    func damagedPack() throws {
        let f = try Fixture()
        let victim = try f.node("a").content![0]
        let pack = f.store.index.lookup(victim)!.pack
        let path = f.store.packPath(pack)
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int)
        flipByte(path, at: size - 30)  // inside the trailer
        let r = try f.cli(["check"])
        #expect(r.code == 1)
        #expect(r.stdout.contains("pack \(pack)"))
        #expect(r.stdout.contains("\(f.snapshot.prefix(8)):\(f.source)/a"))
        unlink(path)
        let missing = try f.cli(["check", "--json"])
        #expect(missing.code == 1)
        #expect(missing.stdout.contains("is missing or damaged"))
    }

    @Test("a damaged snapshot record is reported")
    func damagedSnapshot() throws {
        let f = try Fixture()
        flipByte(f.storePath + "/snapshots/" + f.snapshot, at: 10)
        let r = try f.cli(["check"])
        #expect(r.code == 1)
        #expect(r.stdout.contains("snapshot record \(f.snapshot) is damaged"))
    }
}
