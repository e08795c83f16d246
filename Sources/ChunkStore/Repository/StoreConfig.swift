import Chunking
import Compression
import Foundation
import JSONFormat

/// The store's `config` object: written once by `init`, read by every command.
public struct StoreConfig: Codable, Sendable, Equatable {
    /// The newest format version this program reads and writes (docs/FORMAT.md): version 2 added
    /// content lists (which a version-1 store simply does not have); version 3 is version 2 encrypted.
    public static let currentVersion = 3
    /// The format of a store without encryption (`init --no-encryption`), which stays version 2.
    public static let plaintextVersion = 2
    /// The encrypted format.
    public static let encryptedVersion = 3
    /// A config is a few hundred bytes; a longer file is damage, refused before it is read.
    public static let maximumLength = 64 << 10

    /// The store's format version (2 plaintext, 3 encrypted; docs/FORMAT.md).
    public var version: Int
    /// Random id of the store (64 hex digits), to tell stores apart.
    public var id: String
    /// When the store was made.
    public var created: Date
    /// How data is cut into chunks (every backup into this store uses it, so chunks dedup).
    public var chunker: ChunkerConfig
    /// "sha256" (versions 1–2), "hmac-sha256" (version 3: blob ids are keyed).
    public var hash: String
    /// The default codec for new blobs, in `Codec.description` form.
    public var codec: String

    /// FastCDC's parameters as stored in the config.
    public struct ChunkerConfig: Codable, Sendable, Equatable {
        /// Always "fastcdc2020" in version 1.
        public var algorithm: String
        /// The smallest chunk, in bytes.
        public var minSize: Int
        /// The size chunks average, in bytes.
        public var averageSize: Int
        /// The largest chunk, in bytes.
        public var maxSize: Int
        /// FastCDC's normalization level (0–3).
        public var normalization: Int
        /// Hex gear seed; absent for an unkeyed (reference-table) store.
        public var gearSeed: String?

        /// The same as `ChunkerParameters`.
        public var parameters: ChunkerParameters {
            ChunkerParameters(minSize: minSize, averageSize: averageSize, maxSize: maxSize, normalization: normalization)
        }
    }

    /// A new store's config. An encrypted store's gear seed is derived from its master key (so the
    /// config holds none); a plaintext one's is random unless `keyed` is false.
    public static func new(parameters: ChunkerParameters, codec: Codec, keyed: Bool, encrypted: Bool) -> StoreConfig {
        StoreConfig(
            version: encrypted ? encryptedVersion : plaintextVersion, id: ChunkID.random().hex, created: Date(),
            chunker: ChunkerConfig(
                algorithm: "fastcdc2020", minSize: parameters.minSize, averageSize: parameters.averageSize,
                maxSize: parameters.maxSize, normalization: parameters.normalization, gearSeed: keyed && !encrypted ? ChunkID.random().hex : nil),
            hash: encrypted ? "hmac-sha256" : "sha256", codec: codec.description)
    }

    /// The config file's bytes: the JSON, sealed with its checksum (`sealed(_:)`). A version-3 config is
    /// the `EncryptedConfig` envelope around this config sealed with `cipher`.
    public func encoded(cipher: StoreCipher = .plaintext) throws -> [UInt8] {
        let json = Array(try JSONFormat.encoder().encode(self))
        guard cipher.isEncrypted else { return Self.sealed(json) }
        let outer = EncryptedConfig(version: version, id: id, encryption: EncryptedConfig.scheme, config: cipher.sealObject(json, kind: .config).hex)
        return Self.sealed(Array(try JSONFormat.encoder().encode(outer)))
    }

    /// The member that ends a sealed config: `,"checksum":"<SHA-256 of the bytes before it, plus "}">"}`.
    /// Byte-exact, so no reader has to re-encode the JSON to check it; readers of the format that do not
    /// know it ignore an unknown key. A config without it (written before it existed) is read as it is.
    static let checksumKey = Array(#","checksum":""#.utf8)
    static let sealLength = checksumKey.count + 64 + 2

    static func sealed(_ json: [UInt8]) -> [UInt8] {
        var out = json
        out.removeLast()  // the closing brace
        let digest = ChunkID(hashing: json).hex
        out += checksumKey + Array(digest.utf8) + Array(#""}"#.utf8)
        return out
    }

    /// Checks a sealed config's checksum. - Returns: false when the config carries none.
    static func verifySeal(_ raw: [UInt8]) -> Bool? {
        guard raw.count > sealLength, Array(raw[(raw.count - sealLength)..<(raw.count - sealLength + checksumKey.count)]) == checksumKey else {
            return nil
        }
        let json = Array(raw[..<(raw.count - sealLength)]) + [UInt8(ascii: "}")]
        let stated = String(decoding: raw[(raw.count - 66)..<(raw.count - 2)], as: UTF8.self)
        return ChunkID(hashing: json).hex == stated
    }

    /// The gear table of a plaintext store (an encrypted one's seed comes from its key: `Store.gearTable`).
    public var gearTable: GearTable {
        guard let seed = chunker.gearSeed, let id = ChunkID(hex: seed) else { return .reference }
        return GearTable(seed: id.bytes)
    }
}

/// A point in time to the nanosecond, as stat(2) gives it.
public struct Timestamp: Codable, Sendable, Equatable, Hashable, Comparable {
    /// Whole seconds since 1970 (UTC).
    public var seconds: Int64
    /// Nanoseconds past them (0–999,999,999).
    public var nanoseconds: Int32

    /// A time of `seconds` and `nanoseconds`.
    public init(seconds: Int64, nanoseconds: Int32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// A date, rounded to the nanosecond.
    public init(_ date: Date) {
        let (seconds, nanoseconds) = JSONFormat.split(date)
        self.init(seconds: seconds, nanoseconds: nanoseconds)
    }

    /// The time as a `Date` (which holds less than nanoseconds exactly).
    public var date: Date { Date(timeIntervalSince1970: Double(seconds) + Double(nanoseconds) / 1e9) }

    /// Earlier first.
    public static func < (a: Timestamp, b: Timestamp) -> Bool { (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds) }

    /// `2026-11-24T19:22:31.123456789Z`
    public var iso8601: String { JSONFormat.iso8601(seconds: seconds, nanoseconds: nanoseconds) }

    /// Reads `2026-11-24T19:22:31.123456789Z` (UTC; the fraction optional, up to nine digits).
    public init?(iso8601 text: String) {
        guard let (seconds, nanoseconds) = JSONFormat.parseISO8601(text) else { return nil }
        self.init(seconds: seconds, nanoseconds: nanoseconds)
    }

    // Encoded as [seconds, nanoseconds] to keep trees compact and exact.
    /// Reads `[seconds, nanoseconds]`.
    public init(from decoder: Decoder) throws {
        var c = try decoder.unkeyedContainer()
        self.init(seconds: try c.decode(Int64.self), nanoseconds: try c.decode(Int32.self))
    }

    /// Writes `[seconds, nanoseconds]`, compact and exact.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.unkeyedContainer()
        try c.encode(seconds)
        try c.encode(nanoseconds)
    }

    /// The current time from the system's real-time clock.
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(seconds: Int64(ts.tv_sec), nanoseconds: Int32(ts.tv_nsec))
    }
}

extension Duration {
    /// The duration in seconds, as reports and JSON give it.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    /// The duration in milliseconds.
    public var milliseconds: Double { seconds * 1000 }
}

extension StoreConfig {
    /// Reads what a config says before any key is known: its version (one this program reads), its
    /// checksum, and for version 3 the encrypted envelope (`EncryptedConfig`).
    /// - Parameters: `path` names the file in errors; `store` is the store's location.
    public static func header(_ raw: [UInt8], path configPath: String, store path: String) throws -> (version: Int, encrypted: EncryptedConfig?) {
        struct VersionOnly: Decodable { var version: Int }
        guard let version = try? JSONFormat.decoder().decode(VersionOnly.self, from: Data(raw)) else {
            throw StoreError.badConfig(path: configPath, reason: "not a JSON object with a version")
        }
        guard version.version >= 1 else {
            throw StoreError.badConfig(path: configPath, reason: "format version \(version.version) does not exist (versions start at 1)")
        }
        guard version.version <= currentVersion else {
            throw StoreError.newerFormat(path: path, found: version.version, supported: currentVersion)
        }
        if verifySeal(raw) == false {
            throw StoreError.badConfig(
                path: configPath, reason: "its checksum does not match: it was changed or damaged (a changed chunker or seed would silently lose deduplication)"
            )
        }
        guard version.version >= encryptedVersion else { return (version.version, nil) }
        guard let outer = try? JSONFormat.decoder().decode(EncryptedConfig.self, from: Data(raw)), outer.encryption == EncryptedConfig.scheme,
            ChunkID(hex: outer.id) != nil, let sealed = [UInt8](hex: outer.config)
        else {
            throw StoreError.badConfig(
                path: configPath,
                reason: "a version-\(version.version) config must name encryption '\(EncryptedConfig.scheme)', a 64-hex-digit id and a sealed config")
        }
        guard !sealed.isEmpty else { throw StoreError.badConfig(path: configPath, reason: "its sealed config is empty") }
        return (version.version, outer)
    }

    /// Decodes and checks a store's config: for version 3, the sealed config opened with `cipher`
    /// (its version and id must be the envelope's). Checks the one hash and chunker it knows, chunker
    /// parameters within their ranges and a codec it has.
    /// - Returns: the config and its default codec.
    public static func decode(_ raw: [UInt8], path configPath: String, store path: String, cipher: StoreCipher = .plaintext) throws -> (StoreConfig, Codec) {
        let (_, envelope) = try header(raw, path: configPath, store: path)
        var json = raw
        if let envelope {
            do {
                json = try cipher.openObject([UInt8](hex: envelope.config) ?? [], kind: .config)
            } catch {
                throw StoreError.badConfig(path: configPath, reason: "its sealed part does not open: \(error)")
            }
        }
        let config: StoreConfig
        do {
            config = try JSONFormat.decoder().decode(StoreConfig.self, from: Data(json))
        } catch {
            throw StoreError.badConfig(path: configPath, reason: "\(error)")
        }
        if let envelope, config.version != envelope.version || config.id != envelope.id || config.hash != "hmac-sha256" || config.chunker.gearSeed != nil {
            throw StoreError.badConfig(path: configPath, reason: "its sealed part does not match its envelope (version, id, keyed hash)")
        }
        guard ChunkID(hex: config.id) != nil, config.chunker.gearSeed.map({ ChunkID(hex: $0) != nil }) ?? true else {
            throw StoreError.badConfig(path: configPath, reason: "its id or gear seed is not 64 hex digits")
        }
        guard config.hash == (envelope == nil ? "sha256" : "hmac-sha256"), config.chunker.algorithm == "fastcdc2020" else {
            throw StoreError.badConfig(path: configPath, reason: "unknown hash '\(config.hash)' or chunker '\(config.chunker.algorithm)'")
        }
        do { try config.chunker.parameters.validate() } catch {
            throw StoreError.badConfig(path: configPath, reason: "\(error)")
        }
        guard let codec = try? Codec(parsing: config.codec) else {
            throw StoreError.badConfig(path: configPath, reason: "unknown codec '\(config.codec)'")
        }
        return (config, codec)
    }
}

/// The plaintext part of a version-3 config: what is needed to find the key (docs/FORMAT.md,
/// "Encryption"); the config itself is in `config`, sealed.
public struct EncryptedConfig: Codable, Sendable {
    /// AES-256-GCM, keys derived with HKDF-SHA256 from a master key wrapped by key slots.
    public static let scheme = "aes-256-gcm"
    /// The store's format version.
    public var version: Int
    /// The store's id.
    public var id: String
    /// The encryption scheme's name (a reader refuses one it does not know).
    public var encryption: String
    /// The sealed config (`StoreCipher.sealObject`, kind `config`), hex.
    public var config: String
}
