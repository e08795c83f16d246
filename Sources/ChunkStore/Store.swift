import Chunking
import Compression
import Foundation

/// An open chunk store on a local directory (docs/FORMAT.md):
///
///     config  packs/XX/<pack id>  index/<segment id>  snapshots/<snapshot id>  locks/
///
/// Thread-safe: blob reads and the dedup index may be used from every worker.
public final class Store: @unchecked Sendable {  // mutable state is guarded by locks
    public let path: String
    public let config: StoreConfig
    public let chunker: FastCDC
    public let codec: Codec
    public let index: ChunkIndex
    private let packFiles = PackFileCache()
    private let segmentWriteLock = NSLock()

    /// Creates a new, empty store at `path` (the directory may exist but must be empty).
    @discardableResult
    public static func initialize(
        at path: String, parameters: ChunkerParameters = .default, codec: Codec = .default, keyed: Bool = true
    ) throws -> Store {
        try parameters.validate()
        if FileIO.exists("\(path)/config") { throw StoreError.alreadyExists(path: path) }
        if FileIO.exists(path) {
            let entries = try FileManager.default.contentsOfDirectory(atPath: path)
            guard entries.isEmpty else {
                throw StoreError.notAStore(path: path, reason: "the directory exists and is not empty")
            }
        } else {
            try FileIO.makeDirectory(path)
        }
        for sub in ["packs", "index", "snapshots", "locks"] { try FileIO.makeDirectory("\(path)/\(sub)") }
        let config = StoreConfig.new(parameters: parameters, codec: codec, keyed: keyed)
        let bytes = Array(try JSONEncoder.store.encode(config))
        // The config is written last: a directory without it is not a store, so an interrupted init
        // can simply be run again.
        try FileIO.writeAtomically(directory: path, name: "config", bytes: bytes)
        return try Store(path: path)
    }

    /// Opens the store at `path`, checking its config and loading (mapping) its index.
    public init(path: String) throws {
        let configPath = "\(path)/config"
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw StoreError.notAStore(path: path, reason: "it does not exist")
        }
        guard isDir.boolValue else { throw StoreError.notAStore(path: path, reason: "it is not a directory") }
        guard FileIO.exists(configPath) else { throw StoreError.notAStore(path: path, reason: "it has no config") }
        let raw: [UInt8]
        do { raw = try FileIO.readFile(configPath, limit: StoreConfig.maximumLength) } catch let e as FileIO.TooLong {
            throw StoreError.badConfig(path: configPath, reason: "\(e)")
        }
        let (config, codec) = try StoreConfig.decode(raw, path: configPath, store: path)
        self.path = path
        self.config = config
        self.codec = codec
        self.chunker = FastCDC(parameters: config.chunker.parameters, table: config.gearTable)

        var segments: [IndexSegment] = []
        var damaged: [(name: String, error: StoreError)] = []
        for name in try FileIO.list("\(path)/index") {
            do {
                segments.append(try IndexSegment(path: "\(path)/index/\(name)", name: name))
            } catch {
                damaged.append((name, error as? StoreError ?? .damagedIndex(segment: name, reason: "\(error)")))
            }
        }
        self.index = ChunkIndex(segments: segments, damaged: damaged)
    }

    // MARK: Writing

    /// A pack writer for one backup; call `commit()` on it before writing the snapshot record.
    /// Normally two full packs may wait for the disk while workers go on, and new blobs are written as
    /// an index segment every 65,536; `lean` (prune) keeps one pack in flight and writes a segment
    /// every 16,384 blobs: the least memory.
    public func makePackWriter(lean: Bool = false) -> PackWriter { PackWriter(store: self, lean: lean) }

    func packDirectory(for id: ChunkID, create: Bool) throws -> String {
        let directory = "\(path)/packs/\(id.hex.prefix(2))"
        if create { try FileIO.makeDirectory(directory) }
        return directory
    }

    public func packPath(_ id: ChunkID) -> String { "\(path)/packs/\(id.hex.prefix(2))/\(id.hex)" }

    /// Marks an older store with the current format version before anything of the current format is
    /// written to it, so that an older program refuses it instead of misreading it (a version-1 reader
    /// would restore a file whose ids are in content lists as empty). Idempotent.
    public func upgradeFormat() throws {
        guard config.version < StoreConfig.currentVersion else { return }
        var upgraded = config
        upgraded.version = StoreConfig.currentVersion
        try FileIO.writeAtomically(directory: path, name: "config", bytes: Array(try JSONEncoder.store.encode(upgraded)))
    }

    /// Writes the blobs recorded since the last segment as a new index segment.
    @discardableResult
    func writeIndexSegment() throws -> String? {
        try segmentWriteLock.withLock { try writeIndexSegmentLocked() }
    }

    private func writeIndexSegmentLocked() throws -> String? {
        let locations = index.addedLocations()
        guard !locations.isEmpty else { return nil }
        let (name, bytes) = IndexSegment.encode(locations)
        try FileIO.writeAtomically(directory: "\(path)/index", name: name, bytes: bytes)
        index.appendSegment(try IndexSegment(path: "\(path)/index/\(name)", name: name), covering: locations)
        try compactIndexIfNeeded()
        return name
    }

    /// Writes a snapshot record: the commit point of a backup.
    public func saveSnapshot(_ record: SnapshotRecord) throws -> String {
        let bytes = Array(try JSONEncoder.store.encode(record))
        guard bytes.count <= SnapshotRecord.maximumLength else {
            throw StoreError.refused("the snapshot record would be \(bytes.count) bytes, more than the \(SnapshotRecord.maximumLength) a reader accepts: select fewer writers' components or paths")
        }
        let id = ChunkID(hashing: bytes).hex
        try FileIO.writeAtomically(directory: "\(path)/snapshots", name: id, bytes: bytes)
        return id
    }

    // MARK: Reading

    /// Checks `location` against the format's bounds before anything is allocated or read for it: the
    /// raw length within the limit for its type (`BlobType.maximumRawLength`), the stored length no
    /// larger than the raw one (a compressed blob is always smaller, docs/FORMAT.md), the stored bytes
    /// inside the pack file, and the type the caller expects. A store is input: a crafted index entry
    /// must cost a damage report, not gigabytes of memory.
    /// - Returns: the raw length.
    public func checkBounds(_ location: BlobLocation, expecting type: BlobType? = nil) throws -> Int {
        let e = location.entry
        func damaged(_ reason: String) -> StoreError { .damagedBlob(id: e.id, pack: location.pack.hex, reason: reason) }
        if let type, e.type != type { throw damaged("it is a \(e.type.name) blob where a \(type.name) blob belongs") }
        let limit = e.type.maximumRawLength(chunkerMaximum: config.chunker.maxSize)
        guard Int(e.rawLength) <= limit else { throw damaged("raw length \(e.rawLength) exceeds the \(limit) a \(e.type.name) blob may have") }
        guard e.storedLength <= e.rawLength else { throw damaged("stored length \(e.storedLength) exceeds its raw length \(e.rawLength)") }
        if e.codec == .none && e.storedLength != e.rawLength { throw damaged("an uncompressed blob whose stored length \(e.storedLength) is not its raw length \(e.rawLength)") }
        let packSize = try packFiles.open(packPath(location.pack), pack: location.pack.hex).size
        guard Int(e.offset) + Int(e.storedLength) <= packSize else {
            throw damaged("bytes \(e.offset)..<\(Int(e.offset) + Int(e.storedLength)) lie past the end of the pack (\(packSize) bytes)")
        }
        return Int(e.rawLength)
    }

    /// Reads, decompresses and verifies a blob into `destination` (exactly `location.entry.rawLength` bytes).
    /// `scratch` holds the stored bytes; it is grown as needed and may be reused across calls.
    public func readBlob(
        _ location: BlobLocation, expecting type: BlobType? = nil, into destination: UnsafeMutableRawBufferPointer,
        scratch: inout [UInt8], compressor: Compressor
    ) throws {
        let e = location.entry
        let packName = location.pack.hex
        guard try checkBounds(location, expecting: type) == destination.count else {
            throw StoreError.damagedBlob(id: e.id, pack: packName, reason: "raw length \(e.rawLength) differs from the \(destination.count) bytes expected")
        }
        let stored = Int(e.storedLength)
        if scratch.count < stored { scratch = [UInt8](repeating: 0, count: stored) }
        let fd = try packFiles.open(packPath(location.pack), pack: packName).fd
        let got = try scratch.withUnsafeMutableBytes { (b: UnsafeMutableRawBufferPointer) throws -> Int in
            try FileIO.preadFully(
                fd: fd, into: UnsafeMutableRawBufferPointer(rebasing: b[..<stored]), at: Int(e.offset), path: packPath(location.pack))
        }
        guard got == stored else {
            throw StoreError.damagedBlob(id: e.id, pack: packName, reason: "pack is truncated")
        }
        do {
            try scratch.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws in
                try compressor.decompress(UnsafeRawBufferPointer(rebasing: b[..<stored]), kind: e.codec, into: destination)
            }
        } catch {
            throw StoreError.damagedBlob(id: e.id, pack: packName, reason: "\(error)")
        }
        guard ChunkID(hashing: UnsafeRawBufferPointer(destination)) == e.id else {
            throw StoreError.damagedBlob(id: e.id, pack: packName, reason: "content does not match its SHA-256")
        }
    }

    /// Reads and verifies a whole blob (trees, tools). Data restore uses the buffer-reusing variant.
    /// `location` saves the index lookup when the caller already knows where the blob is.
    public func loadBlob(_ id: ChunkID, at known: BlobLocation? = nil, expecting type: BlobType? = nil) throws -> [UInt8] {
        guard let location = known ?? index.lookup(id) else { throw StoreError.missingBlob(id) }
        var out = [UInt8](repeating: 0, count: try checkBounds(location, expecting: type))
        var scratch: [UInt8] = []
        let compressor = Compressor(codec: .none)
        try out.withUnsafeMutableBytes { (d: UnsafeMutableRawBufferPointer) throws in
            try readBlob(location, expecting: type, into: d, scratch: &scratch, compressor: compressor)
        }
        return out
    }

    /// Loads and decodes a tree (from `location` when the caller knows where it is).
    public func loadTree(_ id: ChunkID, at location: BlobLocation? = nil) throws -> Tree {
        let bytes: [UInt8]
        do {
            bytes = try loadBlob(id, at: location, expecting: .tree)
        } catch StoreError.damagedBlob(_, _, let reason) {
            throw StoreError.damagedTree(id: id, reason: reason)
        } catch StoreError.missingBlob {
            throw StoreError.damagedTree(id: id, reason: "it is not in the index")
        }
        do {
            return try Tree.decode(bytes)
        } catch {
            throw StoreError.damagedTree(id: id, reason: "not a valid tree: \(error)")
        }
    }

    // MARK: Snapshots

    public func snapshotIDs() throws -> [String] { try FileIO.list("\(path)/snapshots") }

    /// Loads a snapshot record and checks that its bytes match its id.
    public func loadSnapshot(id: String) throws -> SnapshotRecord {
        let bytes: [UInt8]
        do { bytes = try FileIO.readFile("\(path)/snapshots/\(id)", limit: SnapshotRecord.maximumLength) } catch let e as FileIO.TooLong {
            throw StoreError.damagedSnapshot(id: id, reason: "\(e)")
        }
        guard ChunkID(hashing: bytes).hex == id else { throw StoreError.damagedSnapshot(id: id, reason: "checksum mismatch") }
        do {
            return try JSONDecoder.store.decode(SnapshotRecord.self, from: Data(bytes))
        } catch {
            throw StoreError.damagedSnapshot(id: id, reason: "not a valid record: \(error)")
        }
    }

    /// Every snapshot, oldest first, and the records that could not be read.
    public func snapshots() throws -> (records: [(id: String, record: SnapshotRecord)], damaged: [StoreError]) {
        var records: [(id: String, record: SnapshotRecord)] = []
        var damaged: [StoreError] = []
        for id in try snapshotIDs() {
            do { records.append((id, try loadSnapshot(id: id))) } catch { damaged.append(error as? StoreError ?? .damagedSnapshot(id: id, reason: "\(error)")) }
        }
        records.sort { $0.record.time < $1.record.time }
        return (records, damaged)
    }

    /// Finds a snapshot by id prefix, or `latest`.
    public func resolveSnapshot(_ text: String) throws -> (id: String, record: SnapshotRecord) {
        if text == "latest" {
            let all = try snapshots()
            guard let last = all.records.last else {
                if let damaged = all.damaged.first { throw damaged }
                throw StoreError.snapshotNotFound(text)
            }
            return last
        }
        let matches = try snapshotIDs().filter { $0.hasPrefix(text.lowercased()) }
        guard !text.isEmpty, !matches.isEmpty else { throw StoreError.snapshotNotFound(text) }
        guard matches.count == 1 else { throw StoreError.snapshotAmbiguous(text, matches) }
        return (matches[0], try loadSnapshot(id: matches[0]))
    }
}

/// Open pack files, shared by readers (pread needs no per-reader position), with their sizes: every
/// read is checked against the pack that holds it.
final class PackFileCache: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var files: [String: (fd: Int32, size: Int)] = [:]
    /// Open descriptors kept at most; past this all are closed (a restore touches packs in bursts).
    static let capacity = 256

    func open(_ path: String, pack: String) throws -> (fd: Int32, size: Int) {
        lock.lock()
        defer { lock.unlock() }
        if let file = files[path] { return file }
        if files.count >= Self.capacity {
            for file in files.values { close(file.fd) }
            files.removeAll()
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw StoreError.damagedPack(pack: pack, reason: "the pack file is missing") }
            throw StoreError.io(path: path, operation: "open", errno: code)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            close(fd)
            throw StoreError.io(path: path, operation: "stat", errno: code)
        }
        files[path] = (fd, Int(st.st_size))
        return (fd, Int(st.st_size))
    }

    deinit { for file in files.values { close(file.fd) } }
}

// MARK: Packs and index repair

extension Store {
    /// Every pack id in the store.
    public func packIDs() throws -> [ChunkID] {
        var ids: [ChunkID] = []
        for sub in try FileIO.list("\(path)/packs") {
            for name in try FileIO.list("\(path)/packs/\(sub)") {
                if let id = ChunkID(hex: name) { ids.append(id) }
            }
        }
        return ids
    }

    /// Reads and checks a pack's trailer: the list of its blobs.
    public func readPackTrailer(_ id: ChunkID) throws -> [BlobEntry] {
        let packPath = packPath(id)
        let fd = open(packPath, O_RDONLY | O_CLOEXEC)
        try FileIO.check(fd, packPath, "open")
        defer { close(fd) }
        var st = stat()
        try FileIO.check(fstat(fd, &st), packPath, "stat")
        let size = Int(st.st_size)
        var footer = [UInt8](repeating: 0, count: min(size, PackFormat.footerSize))
        _ = try footer.withUnsafeMutableBytes { try FileIO.preadFully(fd: fd, into: $0, at: size - $0.count, path: packPath) }
        let count = try footer.withUnsafeBytes { try PackFormat.entryCount(footer: $0, pack: id.hex) }
        let tailLength = count * PackFormat.entrySize + PackFormat.footerSize
        guard tailLength <= size else { throw StoreError.damagedPack(pack: id.hex, reason: "trailer longer than the pack") }
        var tail = [UInt8](repeating: 0, count: tailLength)
        _ = try tail.withUnsafeMutableBytes { try FileIO.preadFully(fd: fd, into: $0, at: size - tailLength, path: packPath) }
        return try tail.withUnsafeBytes { try PackFormat.decodeTrailer($0, packSize: size, pack: id.hex) }
    }

    /// Rebuilds the index from the packs' trailers: writes one new segment listing every blob of every
    /// readable pack, then removes the old segments (damaged ones included). Safe to interrupt: until
    /// the old segments are gone, both describe the same blobs. Takes the exclusive lock: a backup
    /// writing packs meanwhile would have its new segment deleted.
    /// - Returns: the number of packs and blobs indexed and the packs whose trailers are damaged.
    public func rebuildIndex() throws -> (packs: Int, blobs: Int, damagedPacks: [String]) {
        let lock = try StoreLock.acquire(self, exclusive: true, purpose: "repair index")
        defer { lock.release() }
        var locations: [BlobLocation] = []
        var damaged: [String] = []
        var packs = 0
        for id in try packIDs() {
            do {
                for e in try readPackTrailer(id) { locations.append(BlobLocation(pack: id, entry: e)) }
                packs += 1
            } catch {
                damaged.append("\(error)")
            }
        }
        let old = try FileIO.list("\(path)/index")
        var newName: String?
        if !locations.isEmpty {
            let (name, bytes) = IndexSegment.encode(locations)
            try FileIO.writeAtomically(directory: "\(path)/index", name: name, bytes: bytes)
            newName = name
        }
        for name in old where name != newName { unlink("\(path)/index/\(name)") }
        try FileIO.fsyncDirectory("\(path)/index")
        return (packs, locations.count, damaged)
    }
}

// MARK: Index compaction

extension Store {
    /// More segments than this are merged into one after a backup: every lookup searches each segment.
    public static let maximumIndexSegments = 16

    /// Merges the index segments into one when there are too many. The merged segment is written
    /// before the old ones are removed, so an interruption leaves a valid (if redundant) index.
    func compactIndexIfNeeded() throws {
        let segments = index.segments
        guard segments.count > Self.maximumIndexSegments else { return }
        guard let (name, _) = try IndexSegment.writeMerged(segments, into: "\(path)/index") else { return }
        let merged = try IndexSegment(path: "\(path)/index/\(name)", name: name)
        index.replaceSegments(segments, with: merged)
        for s in segments where s.name != name { unlink("\(path)/index/\(s.name)") }
        try FileIO.fsyncDirectory("\(path)/index")
    }
}

extension Store {
    /// Removes a snapshot record (the data stays until prune).
    public func deleteSnapshot(id: String) throws {
        let path = "\(path)/snapshots/\(id)"
        if unlink(path) != 0 { throw StoreError.io(path: path, operation: "remove", errno: errno) }
        try FileIO.fsyncDirectory("\(self.path)/snapshots")
    }
}
