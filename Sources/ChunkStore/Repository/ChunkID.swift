import Foundation

/// The id of a blob (a data chunk or a tree): SHA-256 of its raw (uncompressed) bytes.
///
/// Kept as four big-endian words so that comparing ids compares their bytes, which is the order index
/// segments are sorted in.
public struct ChunkID: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    /// 32 bytes: SHA-256 or HMAC-SHA-256.
    public static let byteCount = 32

    /// Hashes `bytes`.
    public init(hashing bytes: UnsafeRawBufferPointer) {
        self = BlobHash.sha256.id(bytes)
    }

    /// The SHA-256 of `bytes`.
    public init<C: Collection>(hashing bytes: C) where C.Element == UInt8 {
        let array = Array(bytes)
        self = array.withUnsafeBytes { ChunkID(hashing: $0) }
    }

    /// Reads 32 raw id bytes.
    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= 32)
        func word(_ i: Int) -> UInt64 { UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
        w0 = word(0)
        w1 = word(1)
        w2 = word(2)
        w3 = word(3)
    }

    /// Parses 64 hex digits.
    public init?(hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            guard let hi = Self.nibble(utf8[2 * i]), let lo = Self.nibble(utf8[2 * i + 1]) else { return nil }
            bytes[i] = hi << 4 | lo
        }
        self = bytes.withUnsafeBytes { ChunkID(bytes: $0) }
    }

    /// A random id (for pack names).
    public static func random() -> ChunkID {
        var g = SystemRandomNumberGenerator()
        return ChunkID(w0: g.next(), w1: g.next(), w2: g.next(), w3: g.next())
    }

    init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
        self.w3 = w3
    }

    /// Writes the 32 raw bytes at `pointer`.
    public func store(to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: w0.bigEndian, toByteOffset: 0, as: UInt64.self)
        pointer.storeBytes(of: w1.bigEndian, toByteOffset: 8, as: UInt64.self)
        pointer.storeBytes(of: w2.bigEndian, toByteOffset: 16, as: UInt64.self)
        pointer.storeBytes(of: w3.bigEndian, toByteOffset: 24, as: UInt64.self)
    }

    /// The 32 bytes.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { store(to: $0.baseAddress!) }
        return out
    }

    /// 64 lower-case hex digits.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The first 8 hex digits, as ids are shown to people.
    public var short: String { String(hex.prefix(8)) }
    /// The hex form.
    public var description: String { hex }

    /// Byte order (the order of index segments).
    public static func < (a: ChunkID, b: ChunkID) -> Bool {
        (a.w0, a.w1, a.w2, a.w3) < (b.w0, b.w1, b.w2, b.w3)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Reads the hex form.
    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = ChunkID(hex: text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad id '\(text)'"))
        }
        self = id
    }

    /// Writes the hex form.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(hex)
    }
}
