import ChunkStore
import Foundation

/// A store in an S3 bucket (Ceph RGW, MinIO, AWS), named restic's way:
/// `s3:http://HOST:PORT/BUCKET/PREFIX` (or `https://`). Objects keep the store's keys under the prefix
/// (docs/FORMAT.md, "Layout"); a PUT is atomic by S3's own rules, so there are no temporaries. Packs
/// larger than `multipartThreshold` are uploaded in parts, several at once.
public final class S3Backend: StorageBackend, @unchecked Sendable {  // immutable after init
    /// The bucket's client.
    public let client: S3Client
    /// The store's prefix in the bucket ("" at the top).
    public let prefix: String
    /// The store's location as given (`s3:http://…`).
    public let location: String
    /// Packs above this size are uploaded in parts (S3 allows at least 5 MiB per part).
    public var multipartThreshold = 8 << 20
    /// Bytes per part of a multipart upload.
    public var partSize = 8 << 20
    /// Parts uploaded at once.
    public var parallelParts = 4
    /// Restore's look-ahead: the packs' blobs about to be read, fetched in large ranged GETs.
    private let readAhead: ReadAhead

    /// Parses `s3:http(s)://host[:port]/bucket[/prefix]`; credentials from the environment unless given.
    /// `SHADOWMOVER_S3_CONNECTIONS` (parallel requests, default 8), `SHADOWMOVER_S3_RETRIES` (default
    /// 8, about 15 s of back-off in all) and `SHADOWMOVER_S3_READ_AHEAD_MIB` (restore's look-ahead,
    /// default 128) tune the client.
    public init(url: String, credentials: S3Credentials? = nil) throws {
        let env = ProcessInfo.processInfo.environment
        let parallelRequests = env["SHADOWMOVER_S3_CONNECTIONS"].flatMap(Int.init) ?? 8
        let retries = env["SHADOWMOVER_S3_RETRIES"].flatMap(Int.init) ?? 8
        let readAheadMiB = env["SHADOWMOVER_S3_READ_AHEAD_MIB"].flatMap(Int.init) ?? 128
        guard url.hasPrefix("s3:"), let parsed = URL(string: String(url.dropFirst(3))), let scheme = parsed.scheme,
            scheme == "http" || scheme == "https", let host = parsed.host, !host.isEmpty
        else {
            throw S3Error.configuration("\(url) is not an S3 store: write s3:http://HOST:PORT/BUCKET/PREFIX (or https)")
        }
        let parts = parsed.path.split(separator: "/").map(String.init)
        guard let bucket = parts.first else { throw S3Error.configuration("\(url) names no bucket: write s3:http://HOST:PORT/BUCKET/PREFIX") }
        guard let credentials = credentials ?? S3Credentials.fromEnvironment() else {
            throw S3Error.configuration("no S3 credentials for \(url): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a credentials file in the job")
        }
        var endpoint = URLComponents()
        endpoint.scheme = scheme
        endpoint.host = host
        endpoint.port = parsed.port
        client = S3Client(endpoint: endpoint.url!, bucket: bucket, credentials: credentials, parallelRequests: parallelRequests, retries: retries)
        let prefix = parts.dropFirst().joined(separator: "/")
        self.prefix = prefix
        location = url
        // Two of the connections stay free for the workers' own reads (trees, blobs not looked ahead).
        readAhead = ReadAhead(budget: readAheadMiB << 20, fetchers: max(1, parallelRequests - 2)) { [client] key, offset, buffer in
            try S3Backend.get(client, key, under: prefix, at: offset, into: buffer)
        }
    }

    func objectKey(_ key: String) -> String { Self.objectKey(key, under: prefix) }

    static func objectKey(_ key: String, under prefix: String) -> String { prefix.isEmpty ? key : "\(prefix)/\(key)" }

    /// A ranged GET of store object `key` into `buffer` (the read, and restore's look-ahead, which
    /// starts before the backend exists). - Returns: bytes read; a missing object throws.
    static func get(_ client: S3Client, _ key: String, under prefix: String, at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let n = try client.get(objectKey(key, under: prefix), at: offset, into: buffer) else { throw StoreError.missingObject(key) }
        return n
    }

    /// Creates the bucket if it is missing; refuses a prefix that already holds objects.
    public func prepareNew() throws {
        if try !client.bucketExists() { try client.createBucket() }
        let present = try client.list(objectKey(""))
        guard present.isEmpty else {
            throw StoreError.notAStore(path: location, reason: "the bucket already holds \(present.count) object(s) under this prefix")
        }
    }

    /// One PUT, or (a pack above the threshold) a multipart upload with parts in parallel.
    public func put(_ key: String, parts: [UnsafeRawBufferPointer], bulk: Bool) throws {
        let size = parts.reduce(0) { $0 + $1.count }
        if bulk && size > multipartThreshold {
            try client.putMultipart(objectKey(key), parts, partSize: partSize, parallel: parallelParts)
        } else {
            try client.put(objectKey(key), parts)
        }
    }

    /// A HEAD for the size, then the object, nil when missing; longer than `limit` is an error.
    public func get(_ key: String, limit: Int) throws -> [UInt8]? {
        // Small objects: a HEAD first keeps a huge one from being fetched at all.
        guard let size = try client.head(objectKey(key)) else { return nil }
        guard size <= limit else { throw StoreError.tooLong(object: key, size: size, limit: limit) }
        return try client.get(objectKey(key))
    }

    /// The bytes from restore's look-ahead when it holds them, else a ranged GET into `buffer`.
    /// - Returns: bytes read.
    public func read(_ key: String, at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        if let n = readAhead.read(key, at: offset, into: buffer) { return n }
        return try Self.get(client, key, under: prefix, at: offset, into: buffer)
    }

    /// The object's size (HEAD), nil when missing.
    public func size(_ key: String) throws -> Int? { try client.head(objectKey(key)) }

    /// Keys under `keyPrefix` (ListObjectsV2, every page).
    public func list(_ keyPrefix: String) throws -> [String] {
        let full = objectKey(keyPrefix)
        let strip = prefix.isEmpty ? 0 : prefix.count + 1
        return try client.list(full).map { String($0.dropFirst(strip)) }
    }

    /// Removes an object.
    public func delete(_ key: String) throws { try client.delete(objectKey(key)) }

    /// Starts fetching `ranges` of `key` in large GETs, several at once (`ReadAhead`).
    public func prefetch(_ key: String, ranges: [Range<Int>]) { readAhead.add(key, ranges: ranges) }

    /// Always nil: objects are read over HTTP.
    public func localFile(_ key: String) -> String? { nil }

    /// None: an object exists whole or not at all.
    public func removeTemporaries() throws -> Int { 0 }
}
