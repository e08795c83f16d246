import CLinux
import Foundation

/// Captures individual files into `<mount>/.shadowmover-shadows/<snapshot id>/<path from the mount>`:
/// - `reflink`: FICLONE, which shares extents (XFS with reflink=1, btrfs) — O(files) in the freeze window;
/// - `copy`: a full copy (pread/pwrite) of only the selected writers' files — O(bytes), any filesystem.
///
/// Each file is point-in-time on its own; the set is consistent because the writers are frozen.
/// Directories are created before the freeze, so the window only clones or copies.
struct CloneProvider: Provider {
    let kind: ProviderKind

    func prepare(_ plan: VolumePlan, setID: String, snapshotID: String) throws {
        if plan.volume.readOnly { throw ShadowCopyError.readOnly(plan.volume, kind.rawValue) }
        let directory = plan.shadowDirectory + "/" + snapshotID
        do { try mkdirs(directory) } catch {
            throw ShadowCopyError.unsupported(plan.volume, "cannot create \(directory): \(error.localizedDescription)")
        }
        if kind == .reflink {
            guard Self.supportsReflink(in: directory) else {
                try? removeTree(directory)
                throw ShadowCopyError.unsupported(plan.volume, "\(plan.volume.fsType) does not support FICLONE here: choose --provider copy (or btrfs)")
            }
        }
        // reflink captures every file under the backup paths (cheap); copy only the writers' files, which
        // commit matches inside the freeze.
        var files: [String] = []
        if kind == .reflink {
            for path in plan.paths { files.append(contentsOf: Self.regularFiles(under: path, skipping: plan.shadowDirectory)) }
        }
        var seen = Set<String>()
        plan.filesToCapture = files.filter { seen.insert($0).inserted }
        var warnings: [String] = []
        if kind == .copy {
            warnings.append("\(plan.volume.mountPoint): copy provider — the freeze window grows with the size of the writers' files copied")
            if !plan.paths.isEmpty {
                warnings.append("\(plan.volume.mountPoint): files outside the writers' components are read live (not point-in-time)")
            }
        }
        for file in plan.filesToCapture {
            try mkdirs(directory + Self.relative(file, to: plan.volume.mountPoint).deletingLastPathComponentString)
        }
        for spec in plan.componentSpecs { try mkdirs(directory + Self.relative(spec.path, to: plan.volume.mountPoint)) }
        plan.properties = ShadowCopyProperties(
            snapshotID: snapshotID, setID: setID, volume: plan.volume, snapshotPath: directory, provider: kind, created: Date(),
            host: ProcessInfo.processInfo.hostName, subvolumes: [:], warnings: warnings)
    }

    func commit(_ plan: VolumePlan, deadline: ContinuousClock.Instant) throws {
        guard let properties = plan.properties else { return }
        // The components' files as they are now, frozen: whatever their names were at identify.
        let componentFiles = plan.componentSpecs.flatMap { ComponentFiles.expand($0, excluding: plan.componentExcludes) }
        let isComponent = Set(componentFiles)
        let files = componentFiles + plan.filesToCapture.filter { !isComponent.contains($0) }
        for (i, file) in files.enumerated() {
            if i % 64 == 63 && ContinuousClock.now > deadline { return }  // the coordinator reports the overrun
            let destination = properties.snapshotPath + Self.relative(file, to: plan.volume.mountPoint)
            let source = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            if source < 0 {
                if errno == ENOENT || errno == ELOOP { continue }  // gone since prepare, or not a file now
                throw ShadowCopyError.provider(plan.volume, "cannot open \(file): \(String(cString: strerror(errno)))")
            }
            defer { close(source) }
            var st = stat()
            fstat(source, &st)
            guard st.st_mode & S_IFMT == S_IFREG else { continue }
            var target = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if target < 0 && errno == ENOENT {  // a subdirectory of a recursive component, new since prepare
                try mkdirs(destination.deletingLastPathComponentString)
                target = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            }
            guard target >= 0 else {
                throw ShadowCopyError.provider(plan.volume, "cannot create \(destination): \(String(cString: strerror(errno)))")
            }
            defer { close(target) }
            if kind == .reflink {
                guard shadowmover_ficlone(target, source) == 0 else {
                    throw ShadowCopyError.provider(plan.volume, "FICLONE \(file) failed: \(String(cString: strerror(errno)))")
                }
            } else {
                try Self.copyContent(from: source, to: target, file: file, volume: plan.volume)
            }
            // The metadata recorded is the original's after the capture, with the clone's size: an
            // application's own checkpoint may still have grown the file between fstat and clone.
            var after = stat(), clone = stat()
            fstat(source, &after)
            fstat(target, &clone)
            after.st_size = clone.st_size
            after.st_blocks = clone.st_blocks
            plan.captured[file] = CapturedFile(shadowPath: destination, stat: after, xattrs: Self.xattrs(of: source))
            if isComponent.contains(file) { plan.capturedComponentFiles.append(file) }
        }
    }

    func delete(_ properties: ShadowCopyProperties) throws { try removeTree(properties.snapshotPath) }

    /// Copies `source` to `target` from offset 0 to its end, with explicit offsets, and fails on any
    /// error: a short copy must never pass for a capture. (Not copy_file_range: on a filesystem with
    /// reflink it may clone instead of copy, with its own rules for the last, partial block, and a
    /// silent short count is indistinguishable from a file that shrank.)
    static func copyContent(from source: Int32, to target: Int32, file: String, volume: Volume) throws {
        let block = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: 4096)
        defer { buffer.deallocate() }
        var offset = 0
        while true {
            let r = pread(source, buffer.baseAddress, block, off_t(offset))
            if r < 0 {
                if errno == EINTR { continue }
                throw ShadowCopyError.provider(volume, "reading \(file) failed: \(String(cString: strerror(errno)))")
            }
            if r == 0 { break }
            var written = 0
            while written < r {
                let w = pwrite(target, buffer.baseAddress! + written, r - written, off_t(offset + written))
                if w < 0 {
                    if errno == EINTR { continue }
                    throw ShadowCopyError.provider(volume, "copying \(file) failed: \(String(cString: strerror(errno)))")
                }
                written += w
            }
            offset += r
        }
    }

    /// The extended attributes of the open file `fd` (none where it has or supports none).
    static func xattrs(of fd: Int32) -> [(name: String, value: [UInt8])] {
        let size = flistxattr(fd, nil, 0)
        guard size > 0 else { return [] }
        var names = [CChar](repeating: 0, count: size)
        let got = flistxattr(fd, &names, size)
        guard got > 0 else { return [] }
        var result: [(name: String, value: [UInt8])] = []
        for raw in names[..<got].split(separator: 0) {
            let name = String(decoding: raw.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let length = fgetxattr(fd, name, nil, 0)
            guard length >= 0 else { continue }
            var value = [UInt8](repeating: 0, count: length)
            let n = value.withUnsafeMutableBytes { fgetxattr(fd, name, $0.baseAddress, length) }
            guard n >= 0 else { continue }
            result.append((name, Array(value[..<n])))
        }
        return result
    }

    static func supportsReflink(in directory: String) -> Bool {
        let a = directory + "/.reflink-probe-a", b = directory + "/.reflink-probe-b"
        defer {
            unlink(a)
            unlink(b)
        }
        let fa = open(a, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fa >= 0 else { return false }
        defer { close(fa) }
        let block = [UInt8](repeating: 0x5a, count: 4096)
        guard write(fa, block, block.count) == block.count else { return false }
        let fb = open(b, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fb >= 0 else { return false }
        defer { close(fb) }
        return shadowmover_ficlone(fb, fa) == 0
    }

    static func regularFiles(under path: String, skipping hidden: String) -> [String] {
        var st = stat()
        guard lstat(path, &st) == 0 else { return [] }
        if st.st_mode & S_IFMT == S_IFREG { return [path] }
        guard st.st_mode & S_IFMT == S_IFDIR, let e = FileManager.default.enumerator(atPath: path) else { return [] }
        var files: [String] = []
        while let rel = e.nextObject() as? String {
            let full = path == "/" ? "/" + rel : path + "/" + rel
            if full == hidden { e.skipDescendants(); continue }
            if (e.fileAttributes?[.type] as? FileAttributeType) == .typeRegular { files.append(full) }
        }
        return files
    }

    static func relative(_ path: String, to mountPoint: String) -> String {
        mountPoint == "/" ? path : String(path.dropFirst(mountPoint.count))
    }
}

extension String {
    var deletingLastPathComponentString: String { (self as NSString).deletingLastPathComponent }
}
