/// A filesystem path as the bytes the kernel sees. Linux names need not be UTF-8, so the data mover
/// never round-trips them through `String`.
public struct PathBytes: Hashable, Sendable, CustomStringConvertible {
    /// The path's bytes (no terminating NUL).
    public var bytes: [UInt8]

    /// A path of `bytes`.
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    /// A path of `string`'s UTF-8.
    public init(_ string: String) { self.bytes = Array(string.utf8) }

    /// This path and `name` joined by one `/`.
    public func appending(_ name: [UInt8]) -> PathBytes {
        var out = bytes
        if out.last != UInt8(ascii: "/") { out.append(UInt8(ascii: "/")) }
        out.append(contentsOf: name)
        return PathBytes(out)
    }

    /// Calls `body` with a NUL-terminated copy of the path.
    public func withCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        var z = bytes
        z.append(0)
        return try z.withUnsafeBufferPointer { try $0.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) } }
    }

    /// The path for messages (invalid UTF-8 shown with replacement characters).
    public var description: String { String(decoding: bytes, as: UTF8.self) }

    /// Components of an absolute or relative path, without empty ones.
    public var components: [[UInt8]] { bytes.split(separator: UInt8(ascii: "/")).map(Array.init) }
}
