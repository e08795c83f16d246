import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The one way ShadowMover writes a file that must survive a crash whole or not at all — store
/// objects, the shadow copy registry, restore's markers: a temporary file in the same directory,
/// written, fsynced and closed, renamed over the final name, and the directory fsynced. A crash
/// leaves the old file or the new one, never a part; on an error the temporary file is removed.
public enum DurableFile {
    /// Writes `bytes` to `path`.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        try throughTemp(directory: directory, mode: mode) { fd, temp in
            try bytes.withUnsafeBytes { try writeAll(fd: fd, $0, path: temp) }
            return name
        }
    }

    /// Creates a temporary file in `directory` (`flags` added to the open; retried with
    /// `fallbackFlags` where the filesystem refuses them with EINVAL), lets `write` fill it and return
    /// the file's name (content-addressed files learn it only once written), then fsync, close,
    /// rename, fsync the directory. - Returns: the name.
    @discardableResult
    public static func throughTemp(
        directory: String, mode: mode_t = 0o444, flags: Int32 = 0, fallbackFlags: Int32? = nil,
        _ write: (_ fd: Int32, _ temp: String) throws -> String
    ) throws -> String {
        let temp = "\(directory)/.tmp-\(UInt64.random(in: 0...UInt64.max))"
        var fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | flags, mode)
        if fd < 0 && errno == EINVAL, let fallbackFlags {
            fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | fallbackFlags, mode)
        }
        try check(fd, temp, "create")
        let name: String
        do {
            name = try write(fd, temp)
            try check(fsync(fd), temp, "fsync")
            try check(close(fd), temp, "close")
        } catch {
            close(fd)
            unlink(temp)
            throw error
        }
        let final = "\(directory)/\(name)"
        if rename(temp, final) != 0 {
            let e = errno
            unlink(temp)
            throw Failure(path: final, operation: "rename into place", code: e)
        }
        try fsyncDirectory(directory)
        return name
    }

    /// Writes all of `buffer` at the descriptor's position (retrying short writes and EINTR).
    public static func writeAll(fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(path: path, operation: "write", code: errno)
            }
            done += n
        }
    }

    /// Makes a rename or removal in `directory` durable.
    public static func fsyncDirectory(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try check(fd, directory, "open directory")
        defer { close(fd) }
        try check(fsync(fd), directory, "fsync directory")
    }

    private static func check(_ rc: Int32, _ path: String, _ operation: String) throws {
        if rc < 0 { throw Failure(path: path, operation: operation, code: errno) }
    }

    /// A step of a durable write that failed.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        /// The file or directory.
        public var path: String
        /// What was being done ("create", "write", "fsync", "rename into place", …).
        public var operation: String
        /// The errno.
        public var code: Int32
        /// "cannot OPERATION PATH: REASON".
        public var description: String { "cannot \(operation) \(path): \(String(cString: strerror(code)))" }
    }
}
