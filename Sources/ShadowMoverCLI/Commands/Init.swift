import ArgumentParser
import ChunkStore
import Chunking
import Compression
import Foundation
import ObjectStorage

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a new, empty chunk store.",
        discussion: "The chunker settings and gear seed are fixed for the store's life; the codec can be changed per backup.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "Default codec: none, lz4, zstd[:LEVEL], zlib[:LEVEL].") var codec = "zstd:1"
    @Option(help: "Minimum chunk size in bytes.") var min = ChunkerParameters.default.minSize
    @Option(help: "Average chunk size in bytes.") var avg = ChunkerParameters.default.averageSize
    @Option(help: "Maximum chunk size in bytes.") var max = ChunkerParameters.default.maxSize
    @Option(help: "FastCDC normalization level 0–3.") var level = ChunkerParameters.default.normalization
    @Flag(help: "Use the reference (unkeyed) gear table instead of one keyed by a random seed.") var unkeyed = false

    func run() throws {
        let path = try storeOptions.resolvedPath()
        let parameters = ChunkerParameters(minSize: min, averageSize: avg, maxSize: max, normalization: level)
        let store = try StoreLocation.initialize(
            path, cacheDirectory: storeOptions.cacheDir, parameters: parameters, codec: try Codec(parsing: codec), keyed: !unkeyed)
        struct Created: Encodable { var path: String; var id: String; var chunker: ChunkerParameters; var codec: String; var keyed: Bool }
        if output.json {
            try Output.json(Created(path: path, id: store.config.id, chunker: parameters, codec: store.config.codec, keyed: !unkeyed))
        } else {
            Output.line("created store \(store.config.id.prefix(8)) at \(path) (chunker \(parameters), codec \(store.config.codec)\(unkeyed ? ", unkeyed" : ""))")
        }
    }
}
