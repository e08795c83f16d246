import DurableFile
import Foundation

/// Buffered writes to a file descriptor (stdout, a file), counting the bytes written: archives need
/// their own offsets.
public final class ByteSink {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private let flushAt = 1 << 20
    /// Bytes written so far (buffered ones included).
    public private(set) var offset: UInt64 = 0
    /// What the bytes go to, for errors.
    public let name: String

    /// A sink writing to `fd`; `name` names it in errors.
    public init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
        buffer.reserveCapacity(flushAt + (64 << 10))
    }

    /// Buffers `bytes`, writing when a megabyte is gathered.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        offset += UInt64(bytes.count)
        if buffer.count + bytes.count <= flushAt {
            buffer.append(contentsOf: bytes)
            return
        }
        try flush()
        if bytes.count >= flushAt { try writeAll(bytes) } else { buffer.append(contentsOf: bytes) }
    }

    /// Buffers `bytes`, writing when a megabyte is gathered.
    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Writes everything buffered.
    public func flush() throws {
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws { try DurableFile.writeAll(fd: fd, bytes, path: name) }
}
