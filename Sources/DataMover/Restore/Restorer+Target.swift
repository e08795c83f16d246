import CLinux
import ChunkStore
import Compression
import Foundation

/// The target directory and the metadata restore applies: owners, modes, times, extended attributes.
extension Restorer {
    func prepareTarget(_ target: PathBytes) throws {
        var st = stat()
        if target.withCString({ stat($0, &st) }) != 0 {
            if errno != ENOENT { throw FileSystem.Failure(path: target, operation: "stat", code: errno) }
            do {
                try FileManager.default.createDirectory(atPath: target.description, withIntermediateDirectories: true)
            } catch {
                throw RestoreError.target("cannot create the target directory \(target): \(error.localizedDescription)")
            }
            return
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw RestoreError.target("the target \(target) is not a directory") }
        if !options.overwrite, !(try FileSystem.list(target)).isEmpty { throw RestoreError.targetNotEmpty(target.description) }
    }

    /// Applies directory metadata deepest first (a directory's mode may forbid creating in it, and
    /// creating in it would move its mtime), each directory opened from the target down.
    func applyDirectoryMetadata(_ plan: [Entry], root: TargetDirectory) throws {
        let owner = geteuid() == 0
        for index in plan.indices.reversed() where plan[index].node.kind == .directory {
            let parent = try openDirectory(of: index, plan: plan, stack: [(-1, root)])
            let directory = try parent.openDirectory(plan[index].name)
            try applyMetadata(plan[index], fd: directory.fd, owner: owner)
        }
    }

    /// Applies a file's or directory's metadata through its descriptor; what cannot be applied (owners
    /// without root) is a warning.
    func applyMetadata(_ entry: Entry, fd: Int32, owner: Bool) throws {
        do {
            if try FileSystem.applyMetadata(fd: fd, entry.node, owner: owner, path: entry.path) { lock.withLock { setIDStripped += 1 } }
        } catch let e as FileSystem.Failure {
            lock.withLock { warnings.append(e.description) }
        }
    }

    /// Applies the metadata of an entry that is not opened (symlink, FIFO, device) by its name.
    func applyMetadata(_ entry: Entry, in directory: TargetDirectory, owner: Bool) throws {
        do {
            try directory.applyMetadata(entry.name, entry.node, owner: owner)
        } catch let e as FileSystem.Failure {
            lock.withLock { warnings.append(e.description) }
        }
    }
}
