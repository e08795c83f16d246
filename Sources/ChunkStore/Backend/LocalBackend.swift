import Foundation

/// A store in a local directory: the embedded default. Objects are files named by their keys; each is
/// written temp → fsync → rename → fsync directory, so a crash leaves the whole object or nothing under
/// its name (docs/FORMAT.md); packs are written with O_DIRECT. Open pack files are kept for reads.
public final class LocalBackend: StorageBackend, @unchecked Sendable {  // `files` is guarded by its own lock
    /// The store's directory.
    public let root: String
    /// The directory, as users name the store.
    public var location: String { root }
    private let files = OpenFiles()

    /// A backend for the directory `root` (which need not exist yet: `prepareNew` makes it).
    public init(root: String) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
    }

    func path(_ key: String) -> String { "\(root)/\(key)" }

    /// Makes the store's directories (refusing a directory that is not empty).
    public func prepareNew() throws {
        if FileIO.exists(root) {
            let entries = try FileManager.default.contentsOfDirectory(atPath: root)
            guard entries.isEmpty else { throw StoreError.notAStore(path: root, reason: "the directory exists and is not empty") }
        } else {
            try FileIO.makeDirectories(root)  // and its parents, as `mkdir -p`
        }
        for sub in ["packs", "index", "snapshots", "locks"] { try FileIO.makeDirectory(path(sub)) }
    }

    /// Writes `parts` as one file: temp → fsync → rename → fsync directory; `bulk` (packs) writes with O_DIRECT.
    public func put(_ key: String, parts: [UnsafeRawBufferPointer], bulk: Bool) throws {
        let full = path(key)
        let slash = full.lastIndex(of: "/")!
        let directory = String(full[..<slash]), name = String(full[full.index(after: slash)...])
        if !FileIO.exists(directory) { try FileIO.makeDirectories(directory) }
        if bulk, parts.count == 2 {
            try FileIO.writePackAtomically(directory: directory, name: name, aligned: parts[0], tail: parts[1])
        } else {
            try FileIO.writeAtomically(directory: directory, name: name, parts: parts)
        }
    }

    /// A whole file, nil when missing; longer than `limit` is an error.
    public func get(_ key: String, limit: Int) throws -> [UInt8]? {
        do {
            return try FileIO.readFile(path(key), limit: limit)
        } catch StoreError.io(_, _, let code) where code == ENOENT {
            return nil
        } catch let e as FileIO.TooLong {
            throw StoreError.tooLong(object: key, size: e.size, limit: e.limit)
        }
    }

    /// Reads bytes of a file from `offset` (pread until full or the end). - Returns: bytes read.
    public func read(_ key: String, at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let fd = try files.open(path(key), key: key).fd
        return try FileIO.preadFully(fd: fd, into: buffer, at: offset, path: path(key))
    }

    /// Asks the kernel to read `ranges` now (POSIX_FADV_WILLNEED): the reads go to the disk together
    /// instead of one at a time as a worker reaches each blob, which matters most when a file's blobs
    /// lie out of order in their pack (an encrypted store's shuffled packs defeat sequential read-ahead).
    public func prefetch(_ key: String, ranges: [Range<Int>]) {
        guard let fd = try? files.open(path(key), key: key).fd else { return }
        for piece in MergedRanges(ranges, gap: 64 << 10) {
            _ = posix_fadvise(fd, off_t(piece.range.lowerBound), off_t(piece.range.count), Int32(POSIX_FADV_WILLNEED))
        }
    }

    /// A file's size, nil when missing.
    public func size(_ key: String) throws -> Int? {
        do {
            return try files.open(path(key), key: key).size
        } catch StoreError.missingObject {
            return nil
        }
    }

    /// The keys under `prefix`, subdirectories walked (hidden temporary files left out).
    public func list(_ prefix: String) throws -> [String] {
        let directory = path(String(prefix.dropLast()))
        guard FileIO.exists(directory) else { return [] }
        var keys: [String] = []
        for name in try FileIO.list(directory) {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: "\(directory)/\(name)", isDirectory: &isDirectory), isDirectory.boolValue {
                keys += try list("\(prefix)\(name)/")
            } else {
                keys.append(prefix + name)
            }
        }
        return keys
    }

    /// Removes a file (a missing one is not an error); a snapshot record's removal is synced to disk.
    public func delete(_ key: String) throws {
        let full = path(key)
        files.forget(full)
        if unlink(full) != 0 && errno != ENOENT { throw StoreError.io(path: full, operation: "remove", errno: errno) }
        // A forgotten snapshot must stay forgotten. Anything else a crash may bring back harmlessly (an
        // unreferenced pack, a redundant index segment, the lock of a process that is gone), and an
        // fsync per object would make a prune of thousands of packs wait on the disk thousands of times.
        if key.hasPrefix(ObjectKey.snapshots) { try FileIO.fsyncDirectory(String(full[..<full.lastIndex(of: "/")!])) }
    }

    /// The file's path: local stores can be read with the file APIs directly.
    public func localFile(_ key: String) -> String? { path(key) }

    /// Removes the temporary files interrupted writes left. - Returns: how many.
    public func removeTemporaries() throws -> Int {
        var directories = [path("index"), path("snapshots"), path("locks")]
        for name in (try? FileIO.list(path("packs"))) ?? [] { directories.append(path("packs/\(name)")) }
        var removed = 0
        for directory in directories where FileIO.exists(directory) {
            for name in try FileIO.list(directory, hidden: true) where name.hasPrefix(".tmp-") {
                if unlink("\(directory)/\(name)") == 0 { removed += 1 }
            }
        }
        return removed
    }
}

/// Open files, shared by readers (pread needs no per-reader position), with their sizes.
final class OpenFiles: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var files: [String: (fd: Int32, size: Int)] = [:]
    /// Open descriptors kept at most; past this all are closed (a restore touches packs in bursts).
    static let capacity = 256

    func open(_ path: String, key: String) throws -> (fd: Int32, size: Int) {
        lock.lock()
        defer { lock.unlock() }
        if let file = files[path] { return file }
        if files.count >= Self.capacity {
            for file in files.values { close(file.fd) }
            files.removeAll()
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw StoreError.missingObject(key) }
            throw StoreError.io(path: path, operation: "open", errno: code)
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            close(fd)
            throw StoreError.io(path: path, operation: "stat", errno: code)
        }
        files[path] = (fd, Int(st.st_size))
        return (fd, Int(st.st_size))
    }

    /// Closes `path` if open (it is about to be removed).
    func forget(_ path: String) {
        lock.withLock {
            if let file = files.removeValue(forKey: path) { close(file.fd) }
        }
    }

    deinit { for file in files.values { close(file.fd) } }
}
