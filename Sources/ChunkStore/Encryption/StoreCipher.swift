import Crypto
import Foundation

/// How a store protects what it writes (docs/FORMAT.md, "Encryption"): nothing in a version-2 store;
/// in a version-3 store every object is AES-256-GCM under a key derived with HKDF-SHA256 from the
/// store's master key, and blob ids are HMAC-SHA256 under a key of their own, so the store does not
/// reveal which public file a user holds.
///
/// Keys are never reused with a repeating nonce, whatever the number of blobs and hosts:
/// - a blob is sealed under its *pack's* key, derived from the master key and the pack id (256 random
///   bits), with the first 96 bits of the blob's keyed id as nonce. Within one pack a nonce repeats only
///   for the same id, that is the same plaintext, which then gives the same ciphertext and reveals
///   nothing; distinct blobs sharing 96 id bits within one pack is a 2⁻⁹⁶-per-pair event;
/// - a pack's trailer is sealed under a second key derived from the pack id, used once;
/// - every other object (config, index segment, snapshot record, lock, job record) starts with 32 random
///   bytes from which its own key is derived: each key seals one message, with a zero nonce.
///
/// Value type; thread-safe.
public struct StoreCipher: Sendable {
    /// The bytes AES-GCM adds to what it seals (the tag).
    public static let tagLength = 16
    /// The random bytes that start a sealed object (`sealObject`).
    static let saltLength = 32

    let keys: Keys?

    struct Keys: Sendable {
        let blobID: SymmetricKey
        let packs: SymmetricKey
        let objects: SymmetricKey
        let gearSeed: [UInt8]
    }

    /// A version-2 store: nothing is encrypted, blob ids are plain SHA-256.
    public static let plaintext = StoreCipher(keys: nil)

    /// A version-3 store's cipher: every key derived from `master` (32 bytes) and the store id.
    init(master: SymmetricKey, storeID: ChunkID) {
        let salt = storeID.bytes
        func derive(_ purpose: String) -> SymmetricKey {
            HKDF<SHA256>.deriveKey(inputKeyMaterial: master, salt: salt, info: Array("shadowmover/v3/\(purpose)".utf8), outputByteCount: 32)
        }
        keys = Keys(
            blobID: derive("blob-id"), packs: derive("pack"), objects: derive("object"),
            gearSeed: derive("gear").withUnsafeBytes { Array($0) })
        hash = keys!.blobID.withUnsafeBytes { BlobHash(hmacKey: Array($0)) }
        derivedPackKeys = PackKeyCache()
    }

    /// A cipher under a fresh random master key, as a new encrypted store has (benchmarks, tests).
    public static func randomKey() -> StoreCipher { StoreCipher(master: SymmetricKey(size: .bits256), storeID: ChunkID.random()) }

    private init(keys: Keys?) {
        self.keys = keys
        hash = .sha256
        derivedPackKeys = nil
    }

    /// How blob ids are computed: SHA-256, or HMAC-SHA-256 under the blob-id key (its pads hashed once).
    private let hash: BlobHash
    /// Pack keys derived lately: a key derivation (two HKDF passes) costs as much as opening a small
    /// blob, and restoring 100,000 small files opens 100,000 blobs from a few dozen packs.
    private let derivedPackKeys: PackKeyCache?

    /// True for a version-3 (encrypted) store.
    public var isEncrypted: Bool { keys != nil }

    /// The bytes sealing adds to a blob.
    public var blobOverhead: Int { keys == nil ? 0 : Self.tagLength }

    /// The bytes sealing adds to a whole object (its salt and tag): a sealed object may be this much
    /// longer than the plaintext limit of its kind.
    public var objectOverhead: Int { keys == nil ? 0 : Self.saltLength + Self.tagLength }

    /// The seed of the store's keyed gear table (version 3: derived from the master key).
    var gearSeed: [UInt8]? { keys?.gearSeed }

    // MARK: Blob ids

    /// A blob's id: SHA-256 of its raw bytes, or in an encrypted store HMAC-SHA256 under the blob-id key.
    public func blobID(_ raw: UnsafeRawBufferPointer) -> ChunkID { hash.id(raw) }

    /// The ids of several blobs, hashed two at a time (faster than one after the other: `BlobHash`).
    public func blobIDs(_ blobs: [UnsafeRawBufferPointer]) -> [ChunkID] { hash.ids(blobs) }

    /// The id of `bytes` (keyed HMAC-SHA-256 when encrypted, SHA-256 otherwise).
    public func blobID<C: Collection>(_ bytes: C) -> ChunkID where C.Element == UInt8 {
        Array(bytes).withUnsafeBytes { blobID($0) }
    }

    // MARK: Blobs in packs

    /// A pack's two keys: for its blobs and for its trailer.
    public struct PackKeys: Sendable {
        let blobs: SymmetricKey
        let trailer: SymmetricKey
    }

    /// The keys of pack `pack` (nil in a plaintext store).
    public func packKeys(_ pack: ChunkID) -> PackKeys? {
        guard let keys, let derivedPackKeys else { return nil }
        if let known = derivedPackKeys.keys(of: pack) { return known }
        let both = HKDF<SHA256>.deriveKey(inputKeyMaterial: keys.packs, salt: pack.bytes, info: Array("shadowmover/v3/pack".utf8), outputByteCount: 64)
        let derived = both.withUnsafeBytes { b in
            PackKeys(
                blobs: SymmetricKey(data: UnsafeRawBufferPointer(rebasing: b[0..<32])),
                trailer: SymmetricKey(data: UnsafeRawBufferPointer(rebasing: b[32..<64])))
        }
        derivedPackKeys.remember(derived, of: pack)
        return derived
    }

    /// The keys of the packs used lately, shared by every copy of a cipher; thread-safe.
    final class PackKeyCache: @unchecked Sendable {  // `known` guarded by `lock`
        private let lock = NSLock()
        private var known: [ChunkID: PackKeys] = [:]
        /// Packs remembered at most (about 100 bytes each); past this the cache starts again.
        static let capacity = 4096

        func keys(of pack: ChunkID) -> PackKeys? { lock.withLock { known[pack] } }

        func remember(_ keys: PackKeys, of pack: ChunkID) {
            lock.withLock {
                if known.count >= Self.capacity { known.removeAll(keepingCapacity: true) }
                known[pack] = keys
            }
        }
    }

    /// What a blob's seal authenticates besides its bytes: id (32) | type u8 | codec u8 | raw length u32 LE.
    /// A trailer or index entry that lies about any of them fails authentication.
    private static func blobAAD(_ e: BlobEntry) -> [UInt8] {
        var aad = e.id.bytes
        aad.append(e.type.rawValue)
        aad.append(e.codec.rawValue)
        aad.appendLE32(e.rawLength)
        return aad
    }

    private static func blobNonce(_ id: ChunkID) -> AES.GCM.Nonce {
        try! AES.GCM.Nonce(data: id.bytes[0..<12])  // 12 bytes: always a valid nonce
    }

    /// Seals, in place, the `length` stored bytes at the start of `buffer` for pack `pack`; `buffer` must
    /// have room for the tag. `entry` describes the blob (its stored length is not used).
    /// - Returns: the sealed length (`length + blobOverhead`).
    public func sealBlob(_ buffer: UnsafeMutableRawBufferPointer, length: Int, keys pack: PackKeys?, entry: BlobEntry) -> Int {
        guard let pack else { return length }
        precondition(buffer.count >= length + Self.tagLength)
        let box = try! AES.GCM.seal(  // cannot fail with a 32-byte key and a 12-byte nonce
            UnsafeRawBufferPointer(rebasing: buffer[..<length]), using: pack.blobs, nonce: Self.blobNonce(entry.id),
            authenticating: Self.blobAAD(entry))
        box.ciphertext.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: buffer[..<length]))
        box.tag.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: buffer[length..<(length + Self.tagLength)]))
        return length + Self.tagLength
    }

    /// Opens a sealed blob (`stored`, its bytes as in the pack) and calls `body` with the plaintext
    /// (the compressed bytes). A plaintext store passes `stored` through.
    public func openBlob<R>(
        _ stored: UnsafeRawBufferPointer, pack: ChunkID, entry: BlobEntry, _ body: (UnsafeRawBufferPointer) throws -> R
    ) throws -> R {
        guard let keys = packKeys(pack) else { return try body(stored) }
        guard stored.count >= Self.tagLength else { throw CipherError.authenticationFailed }
        let cut = stored.count - Self.tagLength
        do {
            let box = try AES.GCM.SealedBox(
                nonce: Self.blobNonce(entry.id), ciphertext: UnsafeRawBufferPointer(rebasing: stored[..<cut]),
                tag: UnsafeRawBufferPointer(rebasing: stored[cut...]))
            let plain = try AES.GCM.open(box, using: keys.blobs, authenticating: Self.blobAAD(entry))
            return try plain.withUnsafeBytes { try body($0) }
        } catch let error as CipherError {
            throw error
        } catch is CryptoKitError {
            throw CipherError.authenticationFailed
        }
    }

    // MARK: Pack trailers

    /// Seals a pack's trailer entries (plaintext stores return them as they are).
    func sealTrailer(_ entries: [UInt8], pack: ChunkID) -> [UInt8] {
        guard let keys = packKeys(pack) else { return entries }
        return Self.seal(entries, key: keys.trailer, aad: Array("trailer".utf8))
    }

    func openTrailer(_ sealed: UnsafeRawBufferPointer, pack: ChunkID) throws -> [UInt8] {
        guard let keys = packKeys(pack) else { return Array(sealed) }
        return try Self.open(sealed, key: keys.trailer, aad: Array("trailer".utf8))
    }

    // MARK: Whole objects

    /// Seals a whole object: `salt (32 random bytes) | ciphertext | tag`, under a key derived from the
    /// object key and the salt, used for this object alone; `kind` is authenticated, so an object of one
    /// kind cannot stand in for another. A plaintext store returns `plaintext`.
    public func sealObject(_ plaintext: [UInt8], kind: ObjectKind) -> [UInt8] {
        guard let keys else { return plaintext }
        let salt = randomBytes(Self.saltLength)
        let key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: keys.objects, salt: salt, info: Array("shadowmover/v3/object/\(kind.rawValue)".utf8), outputByteCount: 32)
        return salt + Self.seal(plaintext, key: key, aad: Array(kind.rawValue.utf8))
    }

    /// Opens what `sealObject` sealed. - Throws: `CipherError.authenticationFailed` when the bytes were
    /// changed, damaged, sealed as another kind or under another key.
    public func openObject(_ stored: [UInt8], kind: ObjectKind) throws -> [UInt8] {
        guard let keys else { return stored }
        guard stored.count >= Self.saltLength + Self.tagLength else { throw CipherError.authenticationFailed }
        let salt = Array(stored[..<Self.saltLength])
        let key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: keys.objects, salt: salt, info: Array("shadowmover/v3/object/\(kind.rawValue)".utf8), outputByteCount: 32)
        return try stored.withUnsafeBytes { try Self.open(UnsafeRawBufferPointer(rebasing: $0[Self.saltLength...]), key: key, aad: Array(kind.rawValue.utf8)) }
    }

    /// The kinds of whole objects, authenticated with them.
    public enum ObjectKind: String, Sendable {
        case config, index, snapshot, lock, job
    }

    // MARK: One-message AES-GCM (each key seals one message, so the nonce is zero)

    static let zeroNonce = try! AES.GCM.Nonce(data: [UInt8](repeating: 0, count: 12))

    static func seal(_ plaintext: [UInt8], key: SymmetricKey, aad: [UInt8]) -> [UInt8] {
        let box = try! AES.GCM.seal(plaintext, using: key, nonce: zeroNonce, authenticating: aad)
        return Array(box.ciphertext) + Array(box.tag)
    }

    static func open(_ sealed: UnsafeRawBufferPointer, key: SymmetricKey, aad: [UInt8]) throws -> [UInt8] {
        guard sealed.count >= tagLength else { throw CipherError.authenticationFailed }
        let cut = sealed.count - tagLength
        do {
            let box = try AES.GCM.SealedBox(
                nonce: zeroNonce, ciphertext: UnsafeRawBufferPointer(rebasing: sealed[..<cut]), tag: UnsafeRawBufferPointer(rebasing: sealed[cut...]))
            return Array(try AES.GCM.open(box, using: key, authenticating: aad))
        } catch {
            throw CipherError.authenticationFailed
        }
    }
}

/// A sealed object that does not open.
public enum CipherError: Error, CustomStringConvertible {
    case authenticationFailed

    /// What failed and the likely causes.
    public var description: String {
        "authentication failed: it was changed or damaged, or sealed with another store's key"
    }
}
