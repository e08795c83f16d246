import Chunking
import Compression
import Crypto
import Foundation
import JSONFormat

/// An open chunk store — the repository layer (docs/FORMAT.md): packs, index, trees, content lists and
/// snapshot records, on a `StorageBackend` (a local directory, or object storage) that it names objects
/// in by key only. A remote store keeps verified copies of its index segments in a local cache
/// directory, which can be deleted at any time.
///
/// Thread-safe: blob reads and the dedup index may be used from every worker.
public final class Store: @unchecked Sendable {  // mutable state is guarded by locks
    /// Where the store's objects are (a directory, a bucket).
    public let backend: StorageBackend
    /// The store's config: format version, id, chunker, codec.
    public let config: StoreConfig
    /// The chunker every backup into this store uses (keyed gear table).
    public let chunker: FastCDC
    /// The codec new blobs are compressed with unless a backup says otherwise.
    public let codec: Codec
    /// Which blobs the store has, and where.
    public let index: ChunkIndex
    /// What protects the store's objects: nothing (version 2) or AES-256-GCM (version 3).
    public let cipher: StoreCipher
    /// The master key and the key slot that opened an encrypted store (to add and remove slots).
    let unlocked: (master: SymmetricKey, slot: String)?
    /// Where index segments are kept locally, as plaintext that can be memory-mapped: a remote store's
    /// and an encrypted store's (nil for a local plaintext store, whose segments are mapped in place).
    let cacheDirectory: String?
    /// True when the cache is a temporary directory of this process's (the default one could not be
    /// made: a user without a writable home), removed with the store.
    private let temporaryCache: Bool
    let packSizes = PackSizes()
    private let segmentWriteLock = NSLock()

    /// The store's location for messages (a directory or an `s3:` URL).
    public var location: String { backend.location }

    /// True for a store on object storage (reads are requests, not page-cache hits).
    public var isRemote: Bool { backend.localFile(ObjectKey.segmentDirectory) == nil }
    /// Threads that read blobs at once (restore, check --read-data): one per core for a local store,
    /// where they are bound by decompressing and verifying; 8 on object storage, where each waits on a
    /// ranged GET most of the time.
    public var readers: Int { isRemote ? 8 : ProcessInfo.processInfo.activeProcessorCount }

    /// The gear table of the store's chunker: keyed by the config's seed, or in an encrypted store by a
    /// seed derived from the master key.
    public var gearTable: GearTable { cipher.gearSeed.map { GearTable(seed: $0) } ?? config.gearTable }

    /// Where index caches go unless told otherwise: `$XDG_CACHE_HOME/shadowmover`, or `~/.cache/shadowmover`.
    public static var defaultCacheDirectory: String {
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return "\(xdg)/shadowmover" }
        return "\(env["HOME"] ?? NSTemporaryDirectory())/.cache/shadowmover"
    }

    /// Creates a new, empty store in a local directory (which may exist but must be empty).
    @discardableResult
    public static func initialize(
        at path: String, parameters: ChunkerParameters = .default, codec: Codec = .default, keyed: Bool = true, encryption: SecretSource? = nil
    ) throws -> Store {
        try initialize(backend: LocalBackend(root: path), parameters: parameters, codec: codec, keyed: keyed, encryption: encryption)
    }

    /// Creates a new, empty store on `backend`: encrypted (version 3) with a first key slot opened by
    /// `encryption`'s secret, or without encryption (version 2) when `encryption` is nil.
    @discardableResult
    public static func initialize(
        backend: StorageBackend, cacheDirectory: String? = nil, parameters: ChunkerParameters = .default, codec: Codec = .default,
        keyed: Bool = true, encryption: SecretSource? = nil, kdf: KeySlot.KDF? = nil
    ) throws -> Store {
        try parameters.validate()
        if try backend.size(ObjectKey.config) != nil { throw StoreError.alreadyExists(path: backend.location) }
        let config = StoreConfig.new(parameters: parameters, codec: codec, keyed: keyed, encrypted: encryption != nil)
        // The secret first (a prompt may fail), then the location, then the key slot (which may create
        // a key file): a wrong password source changes nothing.
        let secret: StoreSecret?
        do {
            secret = try encryption?.secret(store: backend.location, confirm: true)
        } catch KeyError.noSecret {
            throw KeyError.noSecretForNewStore(store: backend.location)
        }
        try backend.prepareNew()
        var cipher = StoreCipher.plaintext
        var unlocked: (master: SymmetricKey, slot: String)?
        if let secret {
            let master = SymmetricKey(size: .bits256)
            let slotID = ChunkID.random().hex
            let kdf = secret.kind == .password ? kdf ?? .scrypt() : .hkdf()
            let slot = try KeySlot.make(master: master, secret: secret, storeID: config.id, slotID: slotID, kdf: kdf)
            try backend.put(ObjectKey.key(slotID), Array(try JSONFormat.encoder().encode(slot)))
            cipher = StoreCipher(master: master, storeID: ChunkID(hex: config.id)!)
            unlocked = (master, slotID)
        }
        // The config is written last: a location without it is not a store, so an interrupted init
        // can simply be run again.
        try backend.put(ObjectKey.config, try config.encoded(cipher: cipher))
        return try Store(backend: backend, cacheDirectory: cacheDirectory) { _ in
            guard let unlocked else { throw KeyError.noSecret(store: backend.location) }
            return unlocked
        }
    }

    /// Opens the store in the local directory `path`.
    public convenience init(path: String, secret: SecretSource = SecretSource(), cacheDirectory: String? = nil) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw StoreError.notAStore(path: path, reason: "it does not exist")
        }
        guard isDir.boolValue else { throw StoreError.notAStore(path: path, reason: "it is not a directory") }
        try self.init(backend: LocalBackend(root: path), cacheDirectory: cacheDirectory, secret: secret)
    }

    /// Opens the store on `backend`, checking its config and loading (mapping) its index. An encrypted
    /// store asks `secret` (by default: the environment, then a prompt) for its password or key file,
    /// and only then. A remote or encrypted store keeps
    /// its index segments in `cacheDirectory` (default `defaultCacheDirectory`).
    public convenience init(backend: StorageBackend, cacheDirectory: String? = nil, secret: SecretSource = SecretSource()) throws {
        try self.init(backend: backend, cacheDirectory: cacheDirectory) { envelope in
            try Self.unlock(backend: backend, storeID: envelope.id, secret: secret.secret(store: backend.location))
        }
    }

    /// Opens the store on `backend`; `unlock` gives an encrypted store's master key and the slot it
    /// came from (called only for an encrypted store).
    init(
        backend: StorageBackend, cacheDirectory: String?, unlock: (EncryptedConfig) throws -> (master: SymmetricKey, slot: String)
    ) throws {
        let configName = "\(backend.location)/config"
        let raw: [UInt8]
        do {
            guard let bytes = try backend.get(ObjectKey.config, limit: StoreConfig.maximumLength) else {
                throw StoreError.notAStore(path: backend.location, reason: "it has no config")
            }
            raw = bytes
        } catch StoreError.tooLong(_, let size, let limit) {
            throw StoreError.badConfig(path: configName, reason: "it is \(size) bytes, more than the \(limit) it may have")
        }
        var cipher = StoreCipher.plaintext
        var unlocked: (master: SymmetricKey, slot: String)?
        if let envelope = try StoreConfig.header(raw, path: configName, store: backend.location).encrypted {
            let opened = try unlock(envelope)
            cipher = StoreCipher(master: opened.master, storeID: ChunkID(hex: envelope.id)!)
            unlocked = opened
        }
        if !cipher.isEncrypted, try !backend.list(ObjectKey.keys).isEmpty {
            // A plaintext config over key slots: someone replaced an encrypted store's config, and the
            // next backup would be written in the clear.
            throw StoreError.badConfig(
                path: configName,
                reason:
                    "it says the store is not encrypted, but the store has key slots (keys/): the config was replaced or damaged; nothing will be written to it in the clear"
            )
        }
        let (config, codec) = try StoreConfig.decode(raw, path: configName, store: backend.location, cipher: cipher)
        self.backend = backend
        self.config = config
        self.codec = codec
        self.cipher = cipher
        self.unlocked = unlocked
        self.chunker = FastCDC(parameters: config.chunker.parameters, table: cipher.gearSeed.map { GearTable(seed: $0) } ?? config.gearTable)
        if backend.localFile(ObjectKey.segmentDirectory) == nil || cipher.isEncrypted {
            (self.cacheDirectory, self.temporaryCache) = try Self.makeCache(cacheDirectory, explicit: cacheDirectory != nil, storeID: config.id)
        } else {
            (self.cacheDirectory, self.temporaryCache) = (nil, false)
        }

        var segments: [IndexSegment] = []
        var damaged: [(name: String, error: StoreError)] = []
        let names = try backend.names(ObjectKey.segments)
        for name in names {
            do {
                segments.append(try Self.openSegment(name, backend: backend, cache: self.cacheDirectory, cipher: cipher))
            } catch {
                damaged.append((name, error as? StoreError ?? .damagedIndex(segment: name, reason: "\(error)")))
            }
        }
        self.index = ChunkIndex(segments: segments, damaged: damaged)
        if let cache = self.cacheDirectory {  // cached segments the store no longer has (compacted away)
            let live = Set(names)
            for name in (try? FileIO.list("\(cache)/index")) ?? [] where !live.contains(name) { unlink("\(cache)/index/\(name)") }
        }
    }

    /// This store's directory in the index cache: `directory` (or the default) / store id. When the
    /// default cannot be made (a user whose home is not writable), a temporary directory stands in.
    private static func makeCache(_ directory: String?, explicit: Bool, storeID: String) throws -> (String, Bool) {
        let path = "\(directory ?? defaultCacheDirectory)/\(storeID)"
        do {
            try FileIO.makeDirectories("\(path)/index")
            return (path, false)
        } catch  where !explicit {
            var template = Array("\(NSTemporaryDirectory())/shadowmover-cache-XXXXXX".utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { throw error }
            let temporary = String(cString: made)
            try FileIO.makeDirectories("\(temporary)/index")
            return (temporary, true)
        }
    }

    deinit {
        if temporaryCache, let cacheDirectory { try? FileManager.default.removeItem(atPath: cacheDirectory) }
    }

    /// Opens index segment `name`: in place on a local plaintext store; otherwise from the cache
    /// (`cache`, this store's directory in it), copying it there first — opened (decrypted) when the
    /// store is encrypted. A cached copy whose bytes do not hash to its name is fetched again.
    static func openSegment(_ name: String, backend: StorageBackend, cache: String?, cipher: StoreCipher) throws -> IndexSegment {
        let key = ObjectKey.segment(name)
        guard let cache else { return try IndexSegment(path: backend.localFile(key)!, name: name) }
        let directory = "\(cache)/index"
        if FileIO.exists("\(directory)/\(name)"), let cached = try? IndexSegment(path: "\(directory)/\(name)", name: name) { return cached }
        if cipher.isEncrypted {
            guard let stored = try backend.get(key, limit: .max) else { throw StoreError.missingObject(key) }
            let plain: [UInt8]
            do { plain = try cipher.openObject(stored, kind: .index) } catch {
                throw StoreError.damagedIndex(segment: name, reason: "\(error)")
            }
            try FileIO.writeAtomically(directory: directory, name: name, bytes: plain)
        } else {
            try FileIO.download(key, from: backend, into: directory, name: name)
        }
        return try IndexSegment(path: "\(directory)/\(name)", name: name)
    }

    /// Writes an index segment with `write` (given a local directory, returning the segment's name),
    /// into the store: in place on a local plaintext store, otherwise through the cache (sealed on its
    /// way into an encrypted store).
    func writeSegment(_ write: (_ directory: String) throws -> String?) throws -> String? {
        if let cacheDirectory {
            guard let name = try write("\(cacheDirectory)/index") else { return nil }
            let bytes = try FileIO.readFile("\(cacheDirectory)/index/\(name)", limit: .max)
            try backend.put(ObjectKey.segment(name), cipher.sealObject(bytes, kind: .index))
            return name
        }
        return try write(backend.localFile(ObjectKey.segmentDirectory)!)
    }

    /// Opens a segment this process just wrote with `writeSegment`.
    func openWrittenSegment(_ name: String) throws -> IndexSegment {
        try Self.openSegment(name, backend: backend, cache: cacheDirectory, cipher: cipher)
    }

    // MARK: Whole objects

    /// Writes a whole object (snapshot record, lock, job record), sealed in an encrypted store.
    func writeObject(_ key: String, _ plaintext: [UInt8], kind: StoreCipher.ObjectKind) throws {
        try backend.put(key, cipher.sealObject(plaintext, kind: kind))
    }

    /// Reads a whole object written by `writeObject`: nil when it is missing; `CipherError` when it does
    /// not open; `StoreError.tooLong` when it is longer than `limit` (plus the seal's bytes).
    func readObject(_ key: String, limit: Int, kind: StoreCipher.ObjectKind) throws -> [UInt8]? {
        guard let stored = try backend.get(key, limit: limit + cipher.objectOverhead) else { return nil }
        return try cipher.openObject(stored, kind: kind)
    }

    // MARK: Writing

    /// A pack writer for one backup; call `commit()` on it before writing the snapshot record.
    /// Normally two full packs may wait for the disk while workers go on, and new blobs are written as
    /// an index segment every 65,536; `lean` (prune) keeps one pack in flight and writes a segment
    /// every 16,384 blobs: the least memory.
    public func makePackWriter(lean: Bool = false) -> PackWriter { PackWriter(store: self, lean: lean) }

    /// Marks a version-1 store as version 2 before anything of version 2 is written to it, so that an
    /// older program refuses it instead of misreading it (a version-1 reader would restore a file whose
    /// ids are in content lists as empty). Idempotent; a store never becomes encrypted by upgrading.
    public func upgradeFormat() throws {
        guard config.version < StoreConfig.plaintextVersion else { return }
        var upgraded = config
        upgraded.version = StoreConfig.plaintextVersion
        try backend.put(ObjectKey.config, try upgraded.encoded())
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
        _ = try writeSegment { directory in
            try FileIO.writeAtomically(directory: directory, name: name, bytes: bytes)
            return name
        }
        index.appendSegment(try openWrittenSegment(name), covering: locations)
        try compactIndexIfNeeded()
        return name
    }

}

/// Pack sizes, looked up once per pack: every read is checked against the pack that holds it, and on
/// object storage a size is a request.
final class PackSizes: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var sizes: [ChunkID: Int] = [:]

    func size(of pack: ChunkID, in backend: StorageBackend) throws -> Int {
        if let size = lock.withLock({ sizes[pack] }) { return size }
        guard let size = try backend.size(ObjectKey.pack(pack)) else {
            throw StoreError.damagedPack(pack: pack.hex, reason: "the pack file is missing")
        }
        lock.withLock { sizes[pack] = size }
        return size
    }

    /// Drops a pack that is being removed.
    func forget(_ pack: ChunkID) { _ = lock.withLock { sizes.removeValue(forKey: pack) } }
}

// MARK: Job history

extension Store {
    /// A job-history record is a few kilobytes; a longer one is not read.
    public static let maximumJobRunLength = 1 << 20

    /// Records one run of job `job` as `jobs/<job>/<name>` (docs/FORMAT.md, "Job history"); in an
    /// encrypted store the job's name is not in the key, a keyed hash of it is (the record holds the name).
    public func appendJobRun(job: String, name: String, bytes: [UInt8]) throws {
        let directory = cipher.isEncrypted ? String(cipher.blobID(Array("job:\(job)".utf8)).hex.prefix(32)) : job
        try writeObject(ObjectKey.jobRun(directory, name), bytes, kind: .job)
    }

    /// Every recorded job run that can be read, as (job, name, bytes), in key order, and the records that
    /// could not (damaged, or in an encrypted store changed or sealed under another key), each named.
    public func jobRuns() throws -> (runs: [(job: String, name: String, bytes: [UInt8])], damaged: [String]) {
        var runs: [(job: String, name: String, bytes: [UInt8])] = []
        var damaged: [String] = []
        for relative in try backend.names(ObjectKey.jobs).sorted() {
            let parts = relative.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            let key = ObjectKey.jobRun(parts[0], parts[1])
            do {
                guard let bytes = try readObject(key, limit: Self.maximumJobRunLength, kind: .job) else { continue }  // removed since the listing
                runs.append((parts[0], parts[1], bytes))
            } catch {
                damaged.append("job record \(key) is damaged: \(error)")
            }
        }
        return (runs, damaged)
    }
}
