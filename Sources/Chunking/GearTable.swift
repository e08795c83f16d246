import Crypto

/// The 256-entry table of 64-bit values that drives the Gear rolling hash.
///
/// Two kinds exist:
/// - the **reference** table, entry *i* = the first 8 bytes (big-endian) of MD5 of 64 bytes of value *i*.
///   It is the table of the FastCDC reference implementation (destor, fastcdc-rs), so unkeyed chunking
///   reproduces the reference cut points exactly;
/// - a **keyed** table derived from a store's random seed, so that chunk sizes do not fingerprint content
///   for someone who does not know the seed (the same reason borg 2 keys its table).
///
/// `shifted` holds every entry shifted left by one bit: FastCDC 2020 rolls two bytes per step and uses it
/// for the first byte of each pair.
public struct GearTable: Sendable, Equatable {
    /// 256 random 64-bit values, one per byte value.
    public let entries: [UInt64]
    /// The same, shifted left by one.
    public let shifted: [UInt64]

    init(entries: [UInt64]) {
        precondition(entries.count == 256)
        self.entries = entries
        self.shifted = entries.map { $0 << 1 }
    }

    /// The reference table (unkeyed mode).
    public static let reference: GearTable = {
        var entries = [UInt64]()
        entries.reserveCapacity(256)
        for value in 0..<256 {
            let digest = Insecure.MD5.hash(data: [UInt8](repeating: UInt8(value), count: 64))
            entries.append(Self.bigEndianPrefix(of: digest))
        }
        return GearTable(entries: entries)
    }()

    /// A keyed table: entry *i* = the first 8 bytes (big-endian) of HMAC-SHA-256(seed, "gear" ‖ i).
    ///
    /// - Parameter seed: the store's random gear seed (32 bytes in stores this program creates).
    public init(seed: [UInt8]) {
        let key = SymmetricKey(data: seed)
        var entries = [UInt64]()
        entries.reserveCapacity(256)
        for value in 0..<256 {
            var message = Array("gear".utf8)
            message.append(UInt8(value))
            let mac = HMAC<SHA256>.authenticationCode(for: message, using: key)
            entries.append(Self.bigEndianPrefix(of: mac))
        }
        self.init(entries: entries)
    }

    private static func bigEndianPrefix<D: Sequence>(of digest: D) -> UInt64 where D.Element == UInt8 {
        var value: UInt64 = 0
        for byte in digest.prefix(8) { value = value << 8 | UInt64(byte) }
        return value
    }
}
