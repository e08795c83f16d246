import ArgumentParser
import ChunkStore
import Chunking
import Compression
import Foundation
import ObjectStorage

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a new, empty chunk store.",
        discussion: """
            The store is encrypted (AES-256-GCM) unless --no-encryption is given: its password comes from \
            --password-file, $SHADOWMOVER_PASSWORD, $SHADOWMOVER_PASSWORD_COMMAND or a prompt (asked twice), or \
            --key-file names a key file to create. Keep the password or key file: without one the store cannot be read. \
            The chunker settings are fixed for the store's life; the codec can be changed per backup.
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "Default codec: none, lz4, zstd[:LEVEL], zlib[:LEVEL].") var codec = "zstd:1"
    @Option(help: "Minimum chunk size in bytes.") var min = ChunkerParameters.default.minSize
    @Option(help: "Average chunk size in bytes.") var avg = ChunkerParameters.default.averageSize
    @Option(help: "Maximum chunk size in bytes.") var max = ChunkerParameters.default.maxSize
    @Option(help: "FastCDC normalization level 0–3.") var level = ChunkerParameters.default.normalization
    @Flag(help: "Use the reference (unkeyed) gear table instead of one keyed by a random seed (stores without encryption only).") var unkeyed = false
    @Flag(help: "Create a store without encryption (format version 2): anyone who can read the store can read every file in it.") var noEncryption = false
    @Option(help: "Memory scrypt uses for the password's key slot, in MiB (64 by default; less is faster to attack).") var kdfMemory = 64

    func run() throws {
        let path = try storeOptions.resolvedPath()
        let parameters = ChunkerParameters(minSize: min, averageSize: avg, maxSize: max, normalization: level)
        if unkeyed && !noEncryption {
            throw ValidationError("--unkeyed needs --no-encryption: an encrypted store's gear table is always keyed by its master key")
        }
        guard kdfMemory >= 1 && kdfMemory <= 1024 else { throw ValidationError("--kdf-memory takes 1 to 1024 MiB") }
        if noEncryption {
            Output.warn("WARNING: creating a store WITHOUT encryption: anyone who can read \(path) can read every file backed up into it")
        }
        let store = try StoreLocation.initialize(
            path, cacheDirectory: storeOptions.cacheDir, parameters: parameters, codec: try Codec(parsing: codec), keyed: !unkeyed,
            encryption: noEncryption ? nil : storeOptions.secret, kdf: .scrypt(memoryMiB: kdfMemory))
        struct Created: Encodable { var path: String; var id: String; var chunker: ChunkerParameters; var codec: String; var keyed: Bool; var encrypted: Bool }
        if output.json {
            try Output.json(Created(path: path, id: store.config.id, chunker: parameters, codec: store.config.codec, keyed: !unkeyed, encrypted: !noEncryption))
        } else {
            let protection = noEncryption ? "not encrypted" : "encrypted, \(storeOptions.keyFile.map { "key file \($0)" } ?? "password")"
            Output.line(
                "created store \(store.config.id.prefix(8)) at \(path) (\(protection); chunker \(parameters), codec \(store.config.codec)\(unkeyed ? ", unkeyed" : ""))"
            )
        }
    }
}
