import Foundation
import JSONFormat

// One libFuzzer binary for every parser that reads untrusted bytes: a store's objects (which may come
// from a compromised host or a shared bucket), an exec writer's answers and job files. The target is
// chosen by SHADOWMOVER_FUZZ_TARGET (tools/fuzz.sh sets it); each must reject bad input with an error,
// never crash, hang or allocate more than its input justifies.
@testable import ChunkStore
@testable import JobFormat
@testable import ShadowCopy

/// The parsers under test, by the name tools/fuzz.sh and the corpus directories use.
enum FuzzTarget: String, CaseIterable {
    case packTrailer = "pack-trailer"
    case indexSegment = "index-segment"
    case tree
    case contentList = "content-list"
    case snapshotRecord = "snapshot-record"
    case config
    case writerReply = "writer-reply"
    case jobFile = "job-file"

    static let chosen: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["SHADOWMOVER_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("set SHADOWMOVER_FUZZ_TARGET to one of: \(allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            exit(2)
        }
        return target
    }()

    func run(_ bytes: [UInt8]) {
        switch self {
        case .packTrailer: Self.packTrailer(bytes)
        case .indexSegment: Self.indexSegment(bytes)
        case .tree: _ = try? Tree.decode(bytes)
        case .contentList: _ = try? ContentList.decode(bytes, id: ChunkID(hashing: bytes), pack: ChunkID(hashing: []))
        case .snapshotRecord: _ = try? JSONFormat.decoder().decode(SnapshotRecord.self, from: Data(bytes))
        case .config: _ = try? StoreConfig.decode(bytes, path: "config", store: "store")
        case .writerReply: Self.writerReplies(bytes)
        case .jobFile: _ = JobFile.parse(String(decoding: bytes, as: UTF8.self), name: "fuzz", path: "fuzz.toml")
        }
    }

    /// The bytes are the tail of a pack: footer, then the trailer it describes (as `readPackTrailer`).
    static func packTrailer(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { tail in
            guard let length = try? PackFormat.tailLength(footer: tail, packSize: tail.count, pack: "fuzz", encrypted: false) else { return }
            _ = try? PackFormat.decodeTrailer(
                UnsafeRawBufferPointer(rebasing: tail[(tail.count - length)...]), packSize: tail.count, pack: ChunkID(hashing: []), cipher: .plaintext)
        }
    }

    /// The bytes are a whole segment file, named by its hash as a writer names it (so the parser gets
    /// past the checksum), opened and then read entry by entry as lookups do.
    static func indexSegment(_ bytes: [UInt8]) {
        let name = ChunkID(hashing: bytes).hex
        let path = scratchDirectory + "/" + name
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { return }
        defer { unlink(path) }
        guard let segment = try? IndexSegment(path: path, name: name) else { return }
        for i in 0..<min(segment.count, 4096) {
            if let location = segment.location(at: i) { _ = segment.lookup(location.entry.id) }
        }
    }

    static let scratchDirectory: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let path = "\(base)/shadowmover-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// The bytes are what an exec writer printed: split into lines, each read as a reply.
    static func writerReplies(_ bytes: [UInt8]) {
        for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            _ = try? ExecWriter.parseReply(Array(line), from: "fuzz writer", to: "freeze")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    FuzzTarget.chosen.run(bytes)
    return 0
}
