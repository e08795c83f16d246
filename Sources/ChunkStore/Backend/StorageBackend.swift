/// Where a store's objects live: the one layer that knows about files, buckets and paths
/// (docs/FORMAT.md, "Layout"). Everything above it — the repository (packs, index, trees, snapshot
/// records), maintenance and inspection — names objects by key only:
///
///     config   keys/<slot id>   packs/XX/<pack id>   index/<segment id>   snapshots/<snapshot id>
///     locks/<lock id>   jobs/<job name>/<run>.json
///
/// Every object is immutable once written, except `config` (rewritten whole by a format upgrade) and
/// lock records (rewritten whole by their heartbeat). Implementations are thread-safe: workers read and
/// write concurrently.
public protocol StorageBackend: AnyObject, Sendable {
    /// The store's location for messages and for `--store` (a directory, or `s3:http://host/bucket/prefix`).
    var location: String { get }

    /// Prepares an empty location for a new store (creates the directory or bucket); refuses one that
    /// already holds objects.
    func prepareNew() throws

    /// Writes `parts`, concatenated, as object `key`: atomically (readers see all of it under the name
    /// or nothing) and durably before returning. `bulk` marks pack data (large, written once, read
    /// rarely): a local disk writes it with O_DIRECT, an object store may upload it in parts; for a bulk
    /// write the first part's base address is page-aligned.
    func put(_ key: String, parts: [UnsafeRawBufferPointer], bulk: Bool) throws

    /// The whole object, or nil when there is none; one longer than `limit` is refused as
    /// `StoreError.tooLong` before anything is allocated for it.
    func get(_ key: String, limit: Int) throws -> [UInt8]?

    /// Reads bytes of object `key` from `offset` into `buffer`. - Returns: the bytes read (fewer at the
    /// object's end). A missing object throws `StoreError.missingObject`.
    func read(_ key: String, at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int

    /// The object's size, or nil when there is none.
    func size(_ key: String) throws -> Int?

    /// The keys under `prefix` (which ends in "/"), in any order, without temporaries.
    func list(_ prefix: String) throws -> [String]

    /// Removes an object; removing one that is gone is not an error.
    func delete(_ key: String) throws

    /// A local file holding the object, where the backend has one (index segments are memory-mapped):
    /// nil for a remote backend, whose store keeps verified copies in its cache directory instead.
    func localFile(_ key: String) -> String?

    /// Removes what interrupted writes left (local temporary files); only called under the exclusive lock.
    func removeTemporaries() throws -> Int

    /// Says that byte `ranges` of object `key` (sorted, without repeats: one per blob) will be read soon,
    /// each once, so that a backend that can start reading them ahead does: a local disk asks the kernel,
    /// an object store fetches them in large ranged GETs. A hint only: it may do nothing, and never fails.
    func prefetch(_ key: String, ranges: [Range<Int>])
}

extension StorageBackend {
    /// No read-ahead (object storage: a ranged GET is made when the bytes are read).
    public func prefetch(_ key: String, ranges: [Range<Int>]) {}

    /// Writes one buffer as object `key` (see `put(_:parts:bulk:)`).
    public func put(_ key: String, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try put(key, parts: [$0], bulk: false) }
    }

    /// The names under `prefix` (the keys without it).
    public func names(_ prefix: String) throws -> [String] {
        try list(prefix).map { String($0.dropFirst(prefix.count)) }
    }
}

/// Byte ranges of one object merged for reading ahead: neighbours fewer than `gap` bytes apart become
/// one piece, unless `apart` says the bytes between them must not be read again (they are held
/// already); a piece grows past `limit` bytes only when a single range is that long.
public struct MergedRanges: Sequence {
    /// A piece to read: `range`, which covers the ranges merged into it, `wanted` bytes in all.
    public struct Piece: Equatable {
        public var range: Range<Int>
        public var wanted: Int
    }
    private var pieces: [Piece] = []

    /// Merges `ranges`, sorted by their lower bounds.
    public init(_ ranges: [Range<Int>], gap: Int, limit: Int = .max, apart: (Range<Int>) -> Bool = { _ in false }) {
        for r in ranges {
            if let last = pieces.last, r.lowerBound <= last.range.upperBound + gap,
                case let end = Swift.max(last.range.upperBound, r.upperBound), end - last.range.lowerBound <= limit,
                r.lowerBound <= last.range.upperBound || !apart(last.range.upperBound..<r.lowerBound)
            {
                pieces[pieces.count - 1] = Piece(range: last.range.lowerBound..<end, wanted: last.wanted + r.count)
            } else {
                pieces.append(Piece(range: r, wanted: r.count))
            }
        }
    }

    public func makeIterator() -> IndexingIterator<[Piece]> { pieces.makeIterator() }
}

/// The keys of a store's objects (docs/FORMAT.md, "Layout").
public enum ObjectKey {
    /// The store's config object.
    public static let config = "config"
    /// The prefixes that `list` and `names` take, one per kind of object.
    public static let packs = "packs/", segments = "index/", snapshots = "snapshots/", locks = "locks/", jobs = "jobs/", keys = "keys/"
    /// Where index segments are; a local backend's `localFile` of it is the directory they are written in.
    public static let segmentDirectory = String(segments.dropLast())

    /// A pack's key: `packs/<first two hex digits>/<id>`.
    public static func pack(_ id: ChunkID) -> String { "\(packs)\(id.hex.prefix(2))/\(id.hex)" }
    /// An index segment's key.
    public static func segment(_ name: String) -> String { segments + name }
    /// A snapshot record's key.
    public static func snapshot(_ id: String) -> String { snapshots + id }
    /// A lock's key.
    public static func lock(_ name: String) -> String { locks + name }
    /// A key slot's key.
    public static func key(_ slot: String) -> String { keys + slot }
    /// A job run record's key: `jobs/<job>/<run>.json`.
    public static func jobRun(_ job: String, _ name: String) -> String { "\(jobs)\(job)/\(name)" }
}
