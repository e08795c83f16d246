import Crypto
import Foundation
import _CryptoExtras

/// What opens an encrypted store: a password, or a key file (docs/FORMAT.md, "Key slots").
public enum StoreSecret: Sendable {
    case password([UInt8])
    /// A key file: read when it exists, created (with a new random secret) when a slot is made for it.
    case keyFile(path: String)

    var kind: KeySlot.Kind {
        switch self {
        case .password: .password
        case .keyFile: .keyFile
        }
    }
}

/// One key slot, `keys/<slot id>`: the store's master key wrapped (AES-256-GCM) under a key derived from
/// a password (scrypt, memory-hard) or a key file's secret (HKDF-SHA256). Plaintext JSON: it must be
/// readable before any key is known. Adding a slot never re-encrypts anything.
public struct KeySlot: Codable, Sendable {
    /// What opens the slot: a password or a key file.
    public enum Kind: String, Codable, Sendable {
        case password
        case keyFile = "keyfile"
    }

    /// How the wrapping key is derived from the secret.
    public struct KDF: Codable, Sendable, Equatable {
        /// `scrypt` (passwords) or `hkdf-sha256` (key files, whose secret is already 256 random bits).
        public var name: String
        /// 32 random bytes, hex.
        public var salt: String
        /// scrypt's cost N (a power of two), block size r and parallelism p; memory is 128 × N × r bytes.
        public var n: Int?
        /// scrypt's block size r.
        public var r: Int?
        /// scrypt's parallelism p.
        public var p: Int?

        /// scrypt with N = 2¹⁶, r = 8, p = 1: 64 MiB and a few hundred milliseconds per try.
        public static func scrypt(memoryMiB: Int = 64) -> KDF {
            let n = max(1024, (memoryMiB << 20) / (128 * 8))
            return KDF(name: "scrypt", salt: randomBytes(32).hex, n: n, r: 8, p: 1)
        }

        static func hkdf() -> KDF { KDF(name: "hkdf-sha256", salt: randomBytes(32).hex, n: nil, r: nil, p: nil) }

        /// The most memory a slot's scrypt may ask for: a hostile slot must not exhaust the machine.
        static let maximumMemory = 1 << 30
    }

    /// The slot format's version (1).
    public var version: Int
    /// Password or key file.
    public var kind: Kind
    /// How the wrapping key is derived from the secret.
    public var kdf: KDF
    /// When the slot was added.
    public var created: Date
    /// The sealed master key, hex: ciphertext (32 bytes) | tag (16).
    public var wrapped: String

    /// A key slot file is a few hundred bytes.
    static let maximumLength = 64 << 10

    /// Makes a slot (id `slotID`) of store `storeID` for `master`, opened by `secret` (whose key file is
    /// created when it does not exist).
    static func make(master: SymmetricKey, secret: StoreSecret, storeID: String, slotID: String, kdf: KDF) throws -> KeySlot {
        let kek = try wrappingKey(secret: secret, kdf: kdf, storeID: storeID, creating: true)
        let sealed = StoreCipher.seal(master.withUnsafeBytes { Array($0) }, key: kek, aad: aad(storeID: storeID, slotID: slotID))
        return KeySlot(version: 1, kind: secret.kind, kdf: kdf, created: Date(), wrapped: sealed.hex)
    }

    /// The master key, when `secret` opens this slot; nil when it does not.
    func unwrap(secret: StoreSecret, storeID: String, slotID: String) throws -> SymmetricKey? {
        guard secret.kind == kind, let sealed = [UInt8](hex: wrapped) else { return nil }
        let kek = try Self.wrappingKey(secret: secret, kdf: kdf, storeID: storeID, creating: false)
        guard let master = try? sealed.withUnsafeBytes({ try StoreCipher.open($0, key: kek, aad: Self.aad(storeID: storeID, slotID: slotID)) }),
            master.count == 32
        else { return nil }
        return SymmetricKey(data: master)
    }

    /// The slot's store and id are authenticated with the master key: a slot copied from another store,
    /// or renamed, does not open.
    private static func aad(storeID: String, slotID: String) -> [UInt8] { Array("shadowmover key slot \(storeID) \(slotID)".utf8) }

    private static func wrappingKey(secret: StoreSecret, kdf: KDF, storeID: String, creating: Bool) throws -> SymmetricKey {
        guard let salt = [UInt8](hex: kdf.salt), salt.count == 32 else { throw KeyError.damagedSlot("its salt is not 32 bytes of hex") }
        switch secret {
        case .password(let password):
            guard kdf.name == "scrypt", let n = kdf.n, let r = kdf.r, let p = kdf.p, n >= 2, n & (n - 1) == 0, (1...32).contains(r), (1...16).contains(p),
                128 * n * r <= KDF.maximumMemory
            else { throw KeyError.damagedSlot("scrypt parameters N=\(kdf.n ?? 0) r=\(kdf.r ?? 0) p=\(kdf.p ?? 0) are out of range") }
            return try KDF_Scrypt.derive(password: password, salt: salt, n: n, r: r, p: p)
        case .keyFile(let path):
            guard kdf.name == "hkdf-sha256" else { throw KeyError.damagedSlot("key-file slot with KDF '\(kdf.name)'") }
            let file =
                creating && !FileManager.default.fileExists(atPath: path) ? try KeyFile.create(path: path, storeID: storeID) : try KeyFile.load(path: path)
            guard file.storeID == storeID else { throw KeyError.keyFileOfAnotherStore(path: path, belongsTo: file.storeID, store: storeID) }
            return HKDF<SHA256>.deriveKey(
                inputKeyMaterial: SymmetricKey(data: file.secret), salt: salt, info: Array("shadowmover/v3/key-file".utf8), outputByteCount: 32)
        }
    }
}

/// scrypt from swift-crypto's extras.
enum KDF_Scrypt {
    static func derive(password: [UInt8], salt: [UInt8], n: Int, r: Int, p: Int) throws -> SymmetricKey {
        do {
            return try KDF.Scrypt.deriveKey(from: password, salt: salt, outputByteCount: 32, rounds: n, blockSize: r, parallelism: p)
        } catch {
            throw KeyError.damagedSlot("scrypt failed: \(error)")
        }
    }
}

/// A key file: a secret of 256 random bits, bound to one store.
///
///     # shadowmover key file — keep it secret: it opens the store below
///     store <store id>
///     secret <64 hex digits>
public struct KeyFile: Sendable {
    /// The id of the store the key file opens.
    public var storeID: String
    var secret: [UInt8]

    static func load(path: String) throws -> KeyFile {
        guard let data = FileManager.default.contents(atPath: path), data.count <= 4096 else {
            throw KeyError.unreadableKeyFile(
                path: path, reason: FileManager.default.fileExists(atPath: path) ? "it cannot be read or is too long" : "it does not exist")
        }
        var store: String?, secret: [UInt8]?
        for line in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            if parts[0] == "store", ChunkID(hex: parts[1]) != nil { store = parts[1].lowercased() }
            if parts[0] == "secret", let bytes = [UInt8](hex: parts[1]), bytes.count == 32 { secret = bytes }
        }
        guard let store, let secret else {
            throw KeyError.unreadableKeyFile(path: path, reason: "it is not a shadowmover key file (a 'store' and a 'secret' line)")
        }
        return KeyFile(storeID: store, secret: secret)
    }

    /// Writes a new key file (mode 0600, refusing to replace a file).
    static func create(path: String, storeID: String) throws -> KeyFile {
        let file = KeyFile(storeID: storeID, secret: randomBytes(32))
        let text = "# shadowmover key file — keep it secret: it opens the store below\nstore \(storeID)\nsecret \(file.secret.hex)\n"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.io(path: path, operation: "create key file", errno: errno) }
        defer { close(fd) }
        try Array(text.utf8).withUnsafeBytes { try FileIO.writeAll(fd: fd, $0, path: path) }
        guard fsync(fd) == 0 else { throw StoreError.io(path: path, operation: "sync", errno: errno) }
        return file
    }
}

/// Why a store's key could not be had or changed.
public enum KeyError: Error, CustomStringConvertible {
    case noSecret(store: String)
    case noSecretForNewStore(store: String)
    case wrongPassword(store: String)
    case keyFileOpensNoSlot(path: String, store: String)
    case keyFileOfAnotherStore(path: String, belongsTo: String, store: String)
    case unreadableKeyFile(path: String, reason: String)
    case damagedSlot(String)
    case noSlots(store: String, damaged: [String])
    case emptyPassword
    case passwordCommand(command: String, reason: String)
    case passwordFile(path: String, reason: String)
    case passwordsDiffer
    case lastSlot(String)
    case slotInUse(String)
    case noSuchSlot(String)

    /// What went wrong and what to do.
    public var description: String {
        switch self {
        case .noSecret(let store):
            "the store at \(store) is encrypted: give its password with --password-file FILE, SHADOWMOVER_PASSWORD_FILE, SHADOWMOVER_PASSWORD, SHADOWMOVER_PASSWORD_COMMAND or at the prompt on a terminal, or its key file with --key-file FILE"
        case .noSecretForNewStore(let store):
            "a new store at \(store) is encrypted: give it a password with --password-file FILE, SHADOWMOVER_PASSWORD_FILE, SHADOWMOVER_PASSWORD, SHADOWMOVER_PASSWORD_COMMAND or at the prompt on a terminal, or a key file to create with --key-file FILE — or pass --no-encryption"
        case .wrongPassword(let store):
            "wrong password: it opens no key slot of the store at \(store)"
        case .keyFileOpensNoSlot(let path, let store):
            "the key file \(path) opens no key slot of the store at \(store): its slot was removed"
        case .keyFileOfAnotherStore(let path, let other, let store):
            "the key file \(path) belongs to store \(other.prefix(8)), not to this store (\(store.prefix(8))): give this store's key file or password"
        case .unreadableKeyFile(let path, let reason): "cannot use the key file \(path): \(reason)"
        case .damagedSlot(let reason): "a key slot is damaged: \(reason)"
        case .noSlots(let store, let damaged):
            "the store at \(store) has no usable key slot under keys/\(damaged.isEmpty ? "" : " (damaged: \(damaged.joined(separator: "; ")))"): it cannot be opened without one"
        case .emptyPassword:
            "the password is empty: choose one (or pass --insecure-empty-password to accept an empty password)"
        case .passwordCommand(let command, let reason): "the password command `\(command)` \(reason)"
        case .passwordFile(let path, let reason): "cannot read the password file \(path): \(reason)"
        case .passwordsDiffer: "the two passwords typed differ: nothing was changed"
        case .lastSlot(let id):
            "key slot \(id.prefix(8)) is the store's last: removing it would lock everyone out — add another with `shadowmover key add` first"
        case .slotInUse(let id):
            "key slot \(id.prefix(8)) is the one this command opened the store with: open it with another key to remove this one, or use `shadowmover key passwd` to replace it"
        case .noSuchSlot(let id): "no key slot matches '\(id)': list them with `shadowmover key list`"
        }
    }
}

func randomBytes(_ count: Int) -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }
}

extension Array where Element == UInt8 {
    var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    init?(hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var i = 0
        while i < utf8.count {
            guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        self = out
    }
}
