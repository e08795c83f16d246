import ArgumentParser
import ChunkStore
import Compression
import Foundation

struct InspectStats: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Sizes, dedup and compression ratios, chunk size histogram, pack fill (all snapshots, or those named).")
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Snapshot ids (default: all).") var snapshots: [String] = []

    func run() throws {
        let store = try storeOptions.open()
        let chosen = snapshots.isEmpty ? try store.snapshots().records : try snapshots.map { try store.resolveSnapshot($0) }
        let s = try Inspector(store: store).stats(snapshots: chosen)
        if output.json { return try Output.json(s) }
        Output.line("\(s.snapshots) snapshot(s), \(s.files) files")
        Output.line("logical size:  \(Output.bytes(s.logicalBytes))")
        Output.line("unique chunks: \(s.uniqueChunks), \(Output.bytes(s.uniqueRawBytes)) raw, \(Output.bytes(s.storedBytes)) stored")
        Output.line(String(format: "dedup ratio:   %.2f×", s.dedupRatio))
        for c in s.compression {
            Output.line(
                String(format: "codec %-5@ %d chunks, %@ → %@ (%.2f×)", c.codec, c.chunks, Output.bytes(c.rawBytes), Output.bytes(c.storedBytes), c.ratio))
        }
        Output.line(String(format: "packs:         %d, %.1f %% filled by these snapshots", s.packs, s.packFill * 100))
        Output.line("chunk sizes:")
        let most = s.histogram.map(\.chunks).max() ?? 1
        for b in s.histogram {
            let bar = String(repeating: "█", count: max(1, b.chunks * 40 / most))
            Output.line("  ≤ \(Output.bytes(b.upTo).padding(toLength: 10, withPad: " ", startingAt: 0)) \(bar) \(b.chunks)")
        }
    }
}

struct InspectChunk: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "chunk", abstract: "Where a blob is stored and every snapshot file that references it.")
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Blob id (64 hex digits).") var id: String

    func run() throws {
        let store = try storeOptions.open()
        guard let chunk = ChunkID(hex: id) else { throw ValidationError("'\(id)' is not a blob id: 64 hex digits") }
        guard let l = store.index.lookup(chunk) else { throw StoreError.missingBlob(chunk) }
        let refs = try Inspector(store: store).references(to: chunk)
        struct Report: Encodable {
            var id: String; var pack: String; var offset: UInt32; var storedLength: UInt32; var rawLength: UInt32; var codec: String; var type: String;
            var referencedBy: [String]
        }
        let r = Report(
            id: chunk.hex, pack: l.pack.hex, offset: l.entry.offset, storedLength: l.entry.storedLength, rawLength: l.entry.rawLength,
            codec: "\(l.entry.codec)", type: l.entry.type.name, referencedBy: refs)
        if output.json { return try Output.json(r) }
        Output.line("blob \(r.id) (\(r.type))")
        Output.line("  pack \(r.pack) at \(r.offset): \(r.storedLength) bytes stored (\(r.codec)), \(r.rawLength) raw")
        Output.line("  referenced by \(refs.count):")
        for ref in refs { Output.line("    \(ref)") }
    }
}

struct InspectPack: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pack", abstract: "A pack's blobs and whether a snapshot references each.")
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Pack id (64 hex digits).") var name: String

    func run() throws {
        let store = try storeOptions.open()
        guard let pack = ChunkID(hex: name) else { throw ValidationError("'\(name)' is not a pack id: 64 hex digits") }
        let blobs = try Inspector(store: store).pack(pack)
        if output.json { return try Output.json(blobs) }
        Output.table(
            ["blob", "type", "codec", "offset", "stored", "raw", "state"],
            blobs.map {
                [
                    String($0.id.prefix(16)), $0.type, $0.codec, "\($0.offset)", "\($0.storedLength)", "\($0.rawLength)",
                    $0.referenced ? "referenced" : "unreferenced",
                ]
            })
    }
}

struct InspectDiff: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff", abstract: "Files added, removed and changed between two snapshots, and the bytes new to the store.")
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "The older snapshot.") var first: String
    @Argument(help: "The newer snapshot.") var second: String

    func run() throws {
        let store = try storeOptions.open()
        let d = try Inspector(store: store).diff(try store.resolveSnapshot(first).record, try store.resolveSnapshot(second).record)
        if output.json { return try Output.json(d) }
        for p in d.added { Output.line("+ \(p)") }
        for p in d.removed { Output.line("- \(p)") }
        for p in d.changed { Output.line("M \(p)") }
        Output.line("\(d.added.count) added, \(d.removed.count) removed, \(d.changed.count) changed; \(Output.bytes(d.bytesNew)) of new data")
    }
}

struct InspectCat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cat",
        abstract:
            "Print an object: config, snapshot ID, tree ID, content-list ID (its chunk ids), blob ID — decrypted and decoded; --raw for the bytes as stored.")
    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "config, snapshot, tree, content-list or blob.") var kind: String
    @Argument(help: "The object's id (not for config).") var id: String?
    @Flag(help: "The bytes as stored (compressed, and in an encrypted store sealed: ciphertext).") var raw = false

    func run() throws {
        let store = try storeOptions.open()
        switch kind {
        case "config":
            if raw || !store.cipher.isEncrypted {
                FileHandle.standardOutput.write(Data(try store.rawObject(ObjectKey.config, limit: StoreConfig.maximumLength)))
            } else {
                FileHandle.standardOutput.write(Data(try store.config.encoded()))  // the sealed config, opened
            }
        case "snapshot":
            let (sid, _) = try store.resolveSnapshot(try need(id))
            let stored = try store.rawObject(ObjectKey.snapshot(sid), limit: SnapshotRecord.maximumLength + store.cipher.objectOverhead)
            FileHandle.standardOutput.write(Data(raw ? stored : try store.cipher.openObject(stored, kind: .snapshot)))
        case "tree":
            let tree = try store.loadTree(try blobID())
            FileHandle.standardOutput.write(Data(try tree.encoded()))
        case "content-list":
            FileHandle.standardOutput.write(Data(try store.loadContentList(try blobID()).map { $0.hex + "\n" }.joined().utf8))
        case "blob":
            let bid = try blobID()
            guard let l = store.index.lookup(bid) else { throw StoreError.missingBlob(bid) }
            if raw {
                _ = try store.checkBounds(l)  // the stored length is no larger than its pack
                var bytes = [UInt8](repeating: 0, count: Int(l.entry.storedLength))
                _ = try bytes.withUnsafeMutableBytes { try store.readPack(l.pack, at: Int(l.entry.offset), into: $0) }
                FileHandle.standardOutput.write(Data(bytes))
            } else {
                FileHandle.standardOutput.write(Data(try store.loadBlob(bid)))
            }
        default:
            throw ValidationError("unknown object kind '\(kind)': use config, snapshot, tree, content-list or blob")
        }
    }

    private func need(_ id: String?) throws -> String {
        guard let id else { throw ValidationError("\(kind) needs an id") }
        return id
    }

    private func blobID() throws -> ChunkID {
        let text = try need(id)
        guard let b = ChunkID(hex: text) else { throw ValidationError("'\(text)' is not an id: 64 hex digits") }
        return b
    }
}

extension Array where Element == UInt8 {
    init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
        self = Array(data)
    }
}
