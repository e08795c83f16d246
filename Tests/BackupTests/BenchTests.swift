import Foundation
import Testing

@Suite("bench")
struct BenchTests {
    @Test("bench generate writes the same small-files tree and large file every time, and refuses a directory that exists")
    func generate() throws {
        let s = Scratch("bench-generate")
        for run in ["a", "b"] {
            #expect(try CLI.run(["bench", "generate", "small-files", s.sub("small-\(run)"), "--files", "250"]).code == 0)
            #expect(try CLI.run(["bench", "generate", "large-file", s.sub("large-\(run)"), "--size", "40M"]).code == 0)
        }
        let a = TreeSnapshot(s.sub("small-a")), b = TreeSnapshot(s.sub("small-b"))
        #expect(a.entries.filter { $0.value.kind == S_IFREG }.count == 250)
        #expect(a.entries.keys.sorted() == b.entries.keys.sorted())
        for (path, entry) in a.entries where entry.kind == S_IFREG { #expect(entry.content == b.entries[path]?.content, "\(path)") }
        let large = try Data(contentsOf: URL(fileURLWithPath: s.sub("large-a/large.bin")))
        #expect(large.count == 40 << 20)
        #expect(large == (try Data(contentsOf: URL(fileURLWithPath: s.sub("large-b/large.bin")))))
        let exists = try CLI.run(["bench", "generate", "small-files", s.sub("small-a")])
        #expect(exists.code != 0)
        #expect(exists.stderr.contains("exists"))
    }
}
