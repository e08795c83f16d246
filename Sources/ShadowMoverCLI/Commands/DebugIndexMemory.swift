import ArgumentParser
import ChunkStore
import Foundation

struct DebugIndexMemory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index-memory",
        abstract: "Measure the dedup index's resident memory per chunk: open the store, look up every chunk, compare RSS.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let before = Self.residentKB()
        let store = try storeOptions.open()
        let opened = Self.residentKB()
        let (lookups, found) = store.index.lookupEveryEntry()
        let after = Self.residentKB()
        let perChunk = lookups > 0 ? Double(after - before) * 1024 / Double(lookups) : 0
        struct Report: Encodable {
            var chunks: Int; var found: Int; var segments: Int; var residentBeforeKB: Int; var residentOpenKB: Int; var residentAfterKB: Int;
            var bytesPerChunk: Double
        }
        let r = Report(
            chunks: lookups, found: found, segments: store.index.segments.count, residentBeforeKB: before, residentOpenKB: opened, residentAfterKB: after,
            bytesPerChunk: perChunk)
        if output.json {
            try Output.json(r)
        } else {
            Output.line("\(lookups) chunks in \(r.segments) segments, \(found) found")
            Output.line("resident: \(before) KiB before opening, \(opened) KiB open, \(after) KiB after looking up every chunk")
            Output.line(String(format: "index: %.1f bytes per chunk resident", perChunk))
        }
    }

    /// VmRSS from /proc/self/status, in KiB.
    static func residentKB() -> Int {
        let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        return 0
    }
}
