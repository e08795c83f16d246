import ArgumentParser
import ChunkStore
import Chunking
import Crypto
import Foundation

struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tools for developers and for checking settings.", subcommands: [DebugChunk.self, DebugIndexMemory.self, DebugJournalWriter.self])
}

struct DebugChunk: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chunk",
        abstract: "Print the chunks FastCDC cuts a file into: offset, length, SHA-256 and (with a store) the store's blob id.",
        discussion: """
            With --unkeyed the reference gear table is used, so the cut points can be compared with other \
            FastCDC 2020 implementations. Without it the store's keyed table (and, unless overridden, its \
            chunk sizes) are used, as a backup into that store would cut the file.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: "The file to chunk.") var file: String
    @Option(help: "Minimum chunk size in bytes.") var min: Int?
    @Option(help: "Average chunk size in bytes.") var avg: Int?
    @Option(help: "Maximum chunk size in bytes.") var max: Int?
    @Option(help: "Normalization level 0–3.") var level: Int?
    @Flag(help: "Use the reference (unkeyed) gear table.") var unkeyed = false

    struct Item: Encodable { var offset: UInt64; var length: Int; var sha256: String; var id: String? }
    struct Report: Encodable { var file: String; var parameters: ChunkerParameters; var keyed: Bool; var chunks: [Item] }

    func run() throws {
        var base = ChunkerParameters.default
        var table = GearTable.reference
        var cipher: StoreCipher?
        if !unkeyed {
            guard (try? storeOptions.resolvedPath()) != nil else {
                throw ValidationError("keyed chunking needs a store for its gear seed: pass --store PATH, or --unkeyed for the reference table")
            }
            let store = try storeOptions.open()
            base = store.config.chunker.parameters
            table = store.gearTable
            cipher = store.cipher
        }
        let parameters = ChunkerParameters(
            minSize: min ?? base.minSize, averageSize: avg ?? base.averageSize, maxSize: max ?? base.maxSize,
            normalization: level ?? base.normalization)
        try parameters.validate()
        let stream = ChunkStream(chunker: FastCDC(parameters: parameters, table: table), capacity: 2 * parameters.maxSize + (1 << 20))
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("cannot open \(file): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var items: [Item] = []
        var ended = false
        while true {
            let offset = stream.offset
            guard let chunk = stream.nextChunk() else {
                if ended { break }
                let n = try stream.fill { free in
                    let n = read(fd, free.baseAddress!, free.count)
                    if n < 0 { throw ValidationError("cannot read \(file): \(String(cString: strerror(errno)))") }
                    return n
                }
                if n == 0 { ended = true }
                continue
            }
            let digest = SHA256.hash(data: chunk).map { String(format: "%02x", $0) }.joined()
            items.append(Item(offset: offset, length: chunk.count, sha256: digest, id: cipher?.blobID(chunk).hex))
        }
        if output.json {
            try Output.json(Report(file: file, parameters: parameters, keyed: !unkeyed, chunks: items))
        } else {
            for i in items { Output.line("\(i.offset)\t\(i.length)\t\(i.sha256)\(i.id.map { "\t" + $0 } ?? "")") }
        }
    }
}
