import ChunkStore
import Chunking
import Compression
import Foundation

/// The one place a store's location becomes a backend: a directory, or `s3:http(s)://host/bucket/prefix`.
public enum StoreLocation {
    /// True for a location on object storage.
    public static func isRemote(_ location: String) -> Bool { location.hasPrefix("s3:") }

    /// The backend for `location`. `credentialsFile` (a job's) overrides the environment's S3 keys.
    public static func backend(_ location: String, credentialsFile: String? = nil) throws -> StorageBackend {
        guard isRemote(location) else { return LocalBackend(root: location) }
        return try S3Backend(url: location, credentials: try credentialsFile.map(S3Credentials.fromFile))
    }

    /// Opens the store at `location`; an encrypted one with the password or key file `secret` gives.
    public static func open(
        _ location: String, cacheDirectory: String? = nil, credentialsFile: String? = nil, secret: SecretSource = SecretSource()
    ) throws -> Store {
        guard isRemote(location) else { return try Store(path: location, secret: secret, cacheDirectory: cacheDirectory) }
        let backend = try backend(location, credentialsFile: credentialsFile)
        do {
            return try Store(backend: backend, cacheDirectory: cacheDirectory, secret: secret)
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

    /// Creates a store at `location` (for S3, the bucket too when it is missing): encrypted with a first
    /// key slot for `encryption`'s secret, or without encryption when it is nil.
    public static func initialize(
        _ location: String, cacheDirectory: String? = nil, credentialsFile: String? = nil, parameters: ChunkerParameters = .default,
        codec: Codec = .default, keyed: Bool = true, encryption: SecretSource?, kdf: KeySlot.KDF? = nil
    ) throws -> Store {
        try Store.initialize(
            backend: try backend(location, credentialsFile: credentialsFile), cacheDirectory: cacheDirectory,
            parameters: parameters, codec: codec, keyed: keyed, encryption: encryption, kdf: kdf)
    }
}
