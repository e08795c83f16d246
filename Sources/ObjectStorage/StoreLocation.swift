import ChunkStore
import Chunking
import Compression
import Foundation

/// The one place a store's location becomes a backend: a directory, or `s3:http(s)://host/bucket/prefix`.
public enum StoreLocation {
    /// True for a location on object storage.
    public static func isRemote(_ location: String) -> Bool { location.hasPrefix("s3:") }

    /// Where remote stores keep their disposable index cache unless told otherwise:
    /// `$XDG_CACHE_HOME/shadowmover`, or `~/.cache/shadowmover`.
    public static var defaultCacheDirectory: String {
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return "\(xdg)/shadowmover" }
        return "\(env["HOME"] ?? NSTemporaryDirectory())/.cache/shadowmover"
    }

    /// The backend for `location`. `credentialsFile` (a job's) overrides the environment's S3 keys.
    public static func backend(_ location: String, credentialsFile: String? = nil) throws -> StorageBackend {
        guard isRemote(location) else { return LocalBackend(root: location) }
        return try S3Backend(url: location, credentials: try credentialsFile.map(S3Credentials.fromFile))
    }

    /// Opens the store at `location`.
    public static func open(_ location: String, cacheDirectory: String? = nil, credentialsFile: String? = nil) throws -> Store {
        guard isRemote(location) else { return try Store(path: location) }
        let backend = try backend(location, credentialsFile: credentialsFile)
        do {
            return try Store(backend: backend, cacheDirectory: cacheDirectory ?? defaultCacheDirectory)
        } catch StoreError.notAStore(_, let reason) {
            // Say which: no bucket at all, or a bucket without a store under this prefix.
            if let s3 = backend as? S3Backend, try !s3.client.bucketExists() {
                throw StoreError.notAStore(path: location, reason: "the bucket \(s3.client.bucket) does not exist")
            }
            throw StoreError.notAStore(path: location, reason: reason)
        }
    }

    /// True when `location` holds a store (its config exists).
    public static func exists(_ location: String, credentialsFile: String? = nil) throws -> Bool {
        try backend(location, credentialsFile: credentialsFile).size(ObjectKey.config) != nil
    }

    /// Creates a store at `location` (for S3, the bucket too when it is missing).
    public static func initialize(
        _ location: String, cacheDirectory: String? = nil, credentialsFile: String? = nil, parameters: ChunkerParameters = .default,
        codec: Codec = .default, keyed: Bool = true
    ) throws -> Store {
        try Store.initialize(
            backend: try backend(location, credentialsFile: credentialsFile), cacheDirectory: cacheDirectory ?? defaultCacheDirectory,
            parameters: parameters, codec: codec, keyed: keyed)
    }
}
