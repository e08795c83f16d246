import CLinux
import ChunkStore
import Foundation

/// Thin, named wrappers over the POSIX calls the data mover needs (lstat, readdir, xattrs, times).
enum FileSystem {
    struct Failure: Error, CustomStringConvertible {
        var path: PathBytes
        var operation: String
        var code: Int32
        var description: String { "cannot \(operation) \(path): \(String(cString: strerror(code)))" }
    }

    static func lstat(_ path: PathBytes) throws -> stat {
        var st = stat()
        let rc = path.withCString { Glibc.lstat($0, &st) }
        if rc != 0 { throw Failure(path: path, operation: "stat", code: errno) }
        return st
    }

    /// The names in a directory (raw bytes, without "." and ".."), sorted.
    static func list(_ path: PathBytes) throws -> [[UInt8]] {
        guard let dir = path.withCString({ opendir($0) }) else {
            throw Failure(path: path, operation: "read directory", code: errno)
        }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        errno = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> [UInt8] in
                let length = strnlen(raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
                return Array(raw[..<length])
            }
            if name == [46] || name == [46, 46] { continue }
            names.append(name)
        }
        if errno != 0 { throw Failure(path: path, operation: "read directory", code: errno) }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    static func kind(of mode: mode_t) -> Node.Kind? {
        switch mode & S_IFMT {
        case S_IFREG: .file
        case S_IFDIR: .directory
        case S_IFLNK: .symlink
        case S_IFIFO: .fifo
        case S_IFSOCK: .socket
        case S_IFCHR: .characterDevice
        case S_IFBLK: .blockDevice
        default: nil
        }
    }

    /// A tree node carrying `st`'s metadata (content, subtree and xattrs are filled in by the caller).
    static func node(name: [UInt8], stat st: stat) -> Node? {
        guard let kind = kind(of: st.st_mode) else { return nil }
        var node = Node(
            nameBytes: name, kind: kind, mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
            mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int32(st.st_mtim.tv_nsec)),
            ctime: Timestamp(seconds: Int64(st.st_ctim.tv_sec), nanoseconds: Int32(st.st_ctim.tv_nsec)),
            size: kind == .file ? UInt64(st.st_size) : 0, device: UInt64(st.st_dev), inode: UInt64(st.st_ino),
            links: UInt64(st.st_nlink))
        if kind == .characterDevice || kind == .blockDevice { node.rdev = UInt64(st.st_rdev) }
        // Fewer allocated blocks than the size needs means the file has holes.
        if kind == .file, Int64(st.st_blocks) * 512 < Int64(st.st_size) { node.sparse = true }
        return node
    }

    static func readLink(_ path: PathBytes) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = path.withCString { p in
            buffer.withUnsafeMutableBufferPointer { readlink(p, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), $0.count) }
        }
        if n < 0 { throw Failure(path: path, operation: "read link", code: errno) }
        return Array(buffer[..<n])
    }

    /// Extended attributes of `path` (not following symlinks), sorted by name. Filesystems without
    /// xattr support give none.
    static func readXattrs(_ path: PathBytes) throws -> [ExtendedAttribute] {
        let size = path.withCString { llistxattr($0, nil, 0) }
        if size < 0 {
            if errno == ENOTSUP || errno == ENOSYS { return [] }
            throw Failure(path: path, operation: "list xattrs of", code: errno)
        }
        if size == 0 { return [] }
        var names = [UInt8](repeating: 0, count: size)
        let got = path.withCString { p in names.withUnsafeMutableBytes { llistxattr(p, $0.baseAddress!.assumingMemoryBound(to: CChar.self), size) } }
        if got < 0 { throw Failure(path: path, operation: "list xattrs of", code: errno) }
        var result: [ExtendedAttribute] = []
        for rawName in names[..<got].split(separator: 0) {
            let name = String(decoding: rawName, as: UTF8.self)
            let valueSize = path.withCString { p in name.withCString { lgetxattr(p, $0, nil, 0) } }
            if valueSize < 0 { throw Failure(path: path, operation: "read xattr \(name) of", code: errno) }
            var value = [UInt8](repeating: 0, count: valueSize)
            let n = path.withCString { p in name.withCString { n in value.withUnsafeMutableBytes { lgetxattr(p, n, $0.baseAddress, valueSize) } } }
            if n < 0 { throw Failure(path: path, operation: "read xattr \(name) of", code: errno) }
            result.append(ExtendedAttribute(name: name, value: Array(value[..<n])))
        }
        return result.sorted { $0.name < $1.name }
    }

    /// Sets extended attributes on `path` itself (not following a symlink); `shownAs` names it in errors.
    static func writeXattrs(_ path: PathBytes, _ attributes: [ExtendedAttribute], shownAs shown: PathBytes) throws {
        for a in attributes {
            let rc = path.withCString { p in a.name.withCString { n in a.value.withUnsafeBytes { lsetxattr(p, n, $0.baseAddress, $0.count, 0) } } }
            if rc != 0 { throw Failure(path: shown, operation: "set xattr \(a.name) on", code: errno) }
        }
    }

    /// Applies a restored file's or directory's metadata through its descriptor: extended attributes,
    /// ownership, permissions and times, in that order (chown clears setuid bits, and every change
    /// before the times would move mtime). `path` names it in errors.
    /// - Returns: true when setuid/setgid bits were left off: without root the file is not the
    /// snapshot's owner's, and a setuid program of the restoring user's is not what was backed up (tar
    /// does the same).
    @discardableResult
    static func applyMetadata(fd: Int32, _ node: Node, owner: Bool, path: PathBytes) throws -> Bool {
        var mode = mode_t(node.mode)
        let stripped = !owner && node.kind == .file && mode & (S_ISUID | S_ISGID) != 0
        if stripped { mode &= ~(S_ISUID | S_ISGID) }
        for a in node.xattrs ?? [] {
            let rc = a.name.withCString { n in a.value.withUnsafeBytes { fsetxattr(fd, n, $0.baseAddress, $0.count, 0) } }
            if rc != 0 { throw Failure(path: path, operation: "set xattr \(a.name) on", code: errno) }
        }
        if owner && fchown(fd, node.uid, node.gid) != 0 { throw Failure(path: path, operation: "change owner of", code: errno) }
        if fchmod(fd, mode) != 0 { throw Failure(path: path, operation: "change mode of", code: errno) }
        var times = restoredTimes(node)
        if futimens(fd, &times) != 0 { throw Failure(path: path, operation: "set times of", code: errno) }
        return stripped
    }

    /// The times a restore sets: access time is not stored, so it is left at the restore's time
    /// (UTIME_OMIT); mtime to the nanosecond.
    static func restoredTimes(_ node: Node) -> [timespec] {
        [
            timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2),  // UTIME_OMIT
            timespec(tv_sec: Int(node.mtime.seconds), tv_nsec: Int(node.mtime.nanoseconds)),
        ]
    }
}
