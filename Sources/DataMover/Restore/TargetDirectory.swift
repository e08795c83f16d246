import CLinux
import ChunkStore
import Foundation

/// A directory of a restore's target, open by descriptor.
///
/// Everything a restore creates, replaces or changes below the target goes through one of these:
/// entries are made relative to the directory's descriptor (`mkdirat`, `openat`, `symlinkat`,
/// `mknodat`, `linkat`), their last component is never followed (`O_NOFOLLOW`, `O_EXCL`,
/// `AT_SYMLINK_NOFOLLOW`), and subdirectories are entered by opening them the same way. So no path a
/// restore uses can pass through a symlink — one the snapshot made a moment ago, or one already in the
/// target — and a restore cannot write outside its target, whatever a store's trees say. Owns its
/// descriptor; closed when released.
final class TargetDirectory: @unchecked Sendable {  // immutable; the descriptor is only read
    let fd: Int32
    /// The directory's path, for messages only: nothing is ever opened by it.
    let path: PathBytes

    private init(fd: Int32, path: PathBytes) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Opens the target itself. The user named it, so a symlink there is followed: it is the one path
    /// a restore trusts.
    static func openTarget(_ path: PathBytes) throws -> TargetDirectory {
        let fd = path.withCString { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        if fd < 0 { throw FileSystem.Failure(path: path, operation: "open", code: errno) }
        return TargetDirectory(fd: fd, path: path)
    }

    /// The type bits (`S_IFMT`) of entry `name`, not following a symlink; nil when there is none.
    func kind(of name: [UInt8]) throws -> mode_t? {
        var st = stat()
        if withName(name, { fstatat(fd, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 { return st.st_mode & S_IFMT }
        if errno == ENOENT { return nil }
        throw failure("stat", name)
    }

    /// Opens the subdirectory `name`; refuses a symlink (ELOOP) or anything but a directory.
    func openDirectory(_ name: [UInt8]) throws -> TargetDirectory {
        let child = withName(name) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        if child < 0 { throw failure("open directory", name) }
        return TargetDirectory(fd: child, path: path.appending(name))
    }

    /// Creates the subdirectory `name` (mode 0700 until its metadata is applied) and opens it. A
    /// directory already there is used as it is; anything else in the way is replaced when
    /// `overwrite` is set, and refused otherwise.
    func makeDirectory(_ name: [UInt8], overwrite: Bool) throws -> TargetDirectory {
        if withName(name, { mkdirat(fd, $0, 0o700) }) != 0 {
            guard errno == EEXIST else { throw failure("create directory", name) }
            if try kind(of: name) != S_IFDIR {
                guard overwrite else { throw failure("create directory", name, code: EEXIST) }
                try remove(name)
                if withName(name, { mkdirat(fd, $0, 0o700) }) != 0 { throw failure("create directory", name) }
            }
        }
        return try openDirectory(name)
    }

    /// With `overwrite`, removes a non-directory called `name` so a new entry can take its place; a
    /// directory in the way is refused (replacing it would delete what is below it).
    func clear(_ name: [UInt8], overwrite: Bool) throws {
        guard overwrite, let kind = try kind(of: name) else { return }
        if kind == S_IFDIR {
            throw RestoreError.target("cannot overwrite directory \(path.appending(name)) with a non-directory: remove it first")
        }
        try remove(name)
    }

    /// Removes the non-directory `name` (the link itself, for a symlink).
    func remove(_ name: [UInt8]) throws {
        if withName(name, { unlinkat(fd, $0, 0) }) != 0 && errno != ENOENT { throw failure("remove", name) }
    }

    /// Creates the regular file `name` (mode 0600 until its metadata is applied) and returns its
    /// descriptor, open for reading too (`SharedChunks` reads chunks back through it). `O_EXCL` and
    /// `O_NOFOLLOW`: an entry already there — a symlink above all — makes this fail instead of being
    /// written through.
    func createFile(_ name: [UInt8]) throws -> Int32 {
        let file = withName(name) { openat(fd, $0, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        if file < 0 { throw failure("create", name) }
        return file
    }

    func makeSymlink(_ name: [UInt8], to target: [UInt8]) throws {
        let rc = PathBytes(target).withCString { t in withName(name) { symlinkat(t, fd, $0) } }
        if rc != 0 { throw failure("create symlink", name) }
    }

    /// Creates a FIFO or device node `name` (mode 0600 until its metadata is applied).
    func makeNode(_ name: [UInt8], type: mode_t, device: UInt64 = 0) throws {
        if withName(name, { mknodat(fd, $0, type | 0o600, dev_t(device)) }) != 0 { throw failure("create", name) }
    }

    /// Makes `name` a hard link to `existing` in `directory` (the link itself, never a symlink's target).
    func makeLink(_ name: [UInt8], to existing: [UInt8], in directory: TargetDirectory) throws {
        let rc = directory.withName(existing) { from in withName(name) { linkat(directory.fd, from, fd, $0, 0) } }
        if rc != 0 { throw failure("link", name) }
    }

    /// Applies `node`'s metadata to the entry `name` itself — for symlinks, FIFOs and devices, which
    /// are not opened (files and directories use `FileSystem.applyMetadata(fd:…)` on their descriptor).
    func applyMetadata(_ name: [UInt8], _ node: Node, owner: Bool) throws {
        if let x = node.xattrs, !x.isEmpty {
            // "/proc/self/fd/N" names this very directory; only the last component is looked up, by the
            // l*xattr calls, which do not follow it.
            try FileSystem.writeXattrs(PathBytes("/proc/self/fd/\(fd)").appending(name), x, shownAs: path.appending(name))
        }
        if owner, withName(name, { fchownat(fd, $0, node.uid, node.gid, AT_SYMLINK_NOFOLLOW) }) != 0 {
            throw failure("change owner of", name)
        }
        if node.kind != .symlink, withName(name, { fchmodat(fd, $0, mode_t(node.mode), AT_SYMLINK_NOFOLLOW) }) != 0 {
            throw failure("change mode of", name)
        }
        var times = FileSystem.restoredTimes(node)
        if withName(name, { utimensat(fd, $0, &times, AT_SYMLINK_NOFOLLOW) }) != 0 { throw failure("set times of", name) }
    }

    private func withName<R>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try PathBytes(name).withCString(body)
    }

    private func failure(_ operation: String, _ name: [UInt8], code: Int32 = errno) -> FileSystem.Failure {
        FileSystem.Failure(path: path.appending(name), operation: operation, code: code)
    }
}
