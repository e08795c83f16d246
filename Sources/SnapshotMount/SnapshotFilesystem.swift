import CFuse
import ChunkStore
import DataMover
import Foundation

/// The read-only filesystem `shadowmover mount` serves (FUSE 3):
///
///     snapshots/<time>/…     every snapshot by its time (UTC; a second one in the same second gets its id's start)
///     latest -> snapshots/<newest time>
///     ids/<id>/…             every snapshot by its id
///     hosts/<host>/<time> -> ../../snapshots/<time>
///     tags/<tag>/<time>   -> ../../snapshots/<time>
///
/// The snapshots are those of the store when it was mounted. Files are read on demand through a
/// bounded `ChunkCache`, every chunk verified; damaged data fails that file's read with EIO and is logged.
public final class SnapshotFilesystem: @unchecked Sendable {  // `files` guarded by `lock`; the rest is immutable
    let trees: SnapshotTrees
    let cache: ChunkCache
    private let root: Virtual
    private let mountTime: timespec
    private let lock = NSLock()
    private var files: [UInt64: (file: StoredFile, path: [UInt8])] = [:]
    private var nextHandle: UInt64 = 1
    /// Called with every damage report (the mount command prints them).
    let log: @Sendable (String) -> Void

    /// Directories and links above the snapshots' own trees.
    indirect enum Virtual {
        case directory([String: Virtual], time: Timestamp)
        case link(String, time: Timestamp)
        case snapshot(tree: ChunkID, time: Timestamp)
    }

    /// The filesystem of `store`'s snapshots as they are now, with `cacheBytes` of decompressed chunks; `log` gets damage reports.
    public init(store: Store, cacheBytes: Int, log: @escaping @Sendable (String) -> Void) throws {
        trees = SnapshotTrees(store: store)
        cache = ChunkCache(store: store, capacity: cacheBytes)
        self.log = log
        let (records, damaged) = try store.snapshots()
        for d in damaged { log("left out: \(d)") }
        var byTime: [String: Virtual] = [:], byID: [String: Virtual] = [:]
        var hosts: [String: [String: Virtual]] = [:], tags: [String: [String: Virtual]] = [:]
        var newest: (String, Timestamp)?
        for (id, record) in records {  // oldest first
            let time = Timestamp(record.time)
            var name = Self.timeName(record.time)
            if byTime[name] != nil { name += "-" + id.prefix(8) }
            byTime[name] = .snapshot(tree: record.tree, time: time)
            byID[id] = .snapshot(tree: record.tree, time: time)
            let up = "../../snapshots/" + name
            if let host = Self.safeName(record.hostname) { hosts[host, default: [:]][name] = .link(up, time: time) }
            for tag in record.tags { if let t = Self.safeName(tag) { tags[t, default: [:]][name] = .link(up, time: time) } }
            newest = (name, time)
        }
        let now = Timestamp(Date())
        let top = newest?.1 ?? now
        var rootEntries: [String: Virtual] = [
            "snapshots": .directory(byTime, time: top), "ids": .directory(byID, time: top),
            "hosts": .directory(hosts.mapValues { .directory($0, time: top) }, time: top),
            "tags": .directory(tags.mapValues { .directory($0, time: top) }, time: top),
        ]
        if let newest { rootEntries["latest"] = .link("snapshots/" + newest.0, time: newest.1) }
        root = .directory(rootEntries, time: top)
        mountTime = timespec(tv_sec: Int(now.seconds), tv_nsec: Int(now.nanoseconds))
    }

    static func timeName(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss'Z'"
        return f.string(from: date)
    }

    /// A host name or tag as one path component (nil when it cannot be one).
    static func safeName(_ text: String) -> String? {
        Tree.isValidName(Array(text.utf8)) ? text : nil
    }

    // MARK: Resolving paths

    /// A failure FUSE reports as this errno.
    struct Errno: Error {
        var code: Int32
        init(_ code: Int32) { self.code = code }
    }

    enum Resolved {
        case virtual(Virtual)
        case snapshotRoot(tree: ChunkID, time: Timestamp)
        case node(Node)
    }

    /// What `path` names, or an errno. Paths are bytes: names in a snapshot need not be UTF-8.
    func resolve(_ path: [UInt8]) -> Result<Resolved, Errno> {
        var current = root
        var components = path.split(separator: UInt8(ascii: "/"))[...]
        while let first = components.first {
            switch current {
            case .directory(let children, _):
                guard let next = children[String(decoding: first, as: UTF8.self)] else { return .failure(Errno(ENOENT)) }
                current = next
                components = components.dropFirst()
            case .link:
                return .failure(Errno(ENOTDIR))
            case .snapshot(let tree, let time):
                do {
                    switch try trees.lookup(bytes: Array(components.joined(separator: [UInt8(ascii: "/")])), root: tree) {
                    case .root: return .success(.snapshotRoot(tree: tree, time: time))
                    case .entry(let node): return .success(.node(node))
                    case .missing: return .failure(Errno(ENOENT))
                    }
                } catch {
                    log("damaged: \(String(decoding: path, as: UTF8.self)): \(error)")
                    return .failure(Errno(EIO))
                }
            }
        }
        if case .snapshot(let tree, let time) = current { return .success(.snapshotRoot(tree: tree, time: time)) }
        return .success(.virtual(current))
    }

    // MARK: Operations (each returns 0 or a negative errno, as FUSE wants)

    func getattr(_ path: [UInt8], _ st: UnsafeMutablePointer<stat>) -> Int32 {
        switch resolve(path) {
        case .failure(let e): return -e.code
        case .success(let r):
            st.pointee = stat()
            st.pointee.st_blksize = 4096
            switch r {
            case .virtual(.directory(let children, let time)):
                Self.fill(st, mode: S_IFDIR | 0o555, links: 2 + children.count, time: time)
            case .virtual(.link(let target, let time)):
                Self.fill(st, mode: S_IFLNK | 0o777, links: 1, time: time)
                st.pointee.st_size = off_t(target.utf8.count)
            case .virtual(.snapshot(_, let time)), .snapshotRoot(_, let time):
                Self.fill(st, mode: S_IFDIR | 0o755, links: 2, time: time)
            case .node(let node):
                Self.fill(st, node)
            }
            return 0
        }
    }

    static func fill(_ st: UnsafeMutablePointer<stat>, mode: UInt32, links: Int, time: Timestamp) {
        st.pointee.st_mode = mode
        st.pointee.st_nlink = UInt(links)
        let t = timespec(tv_sec: Int(time.seconds), tv_nsec: Int(time.nanoseconds))
        st.pointee.st_mtim = t
        st.pointee.st_ctim = t
        st.pointee.st_atim = t
    }

    static func fill(_ st: UnsafeMutablePointer<stat>, _ node: Node) {
        let type: UInt32
        switch node.kind {
        case .file: type = S_IFREG
        case .directory: type = S_IFDIR
        case .symlink: type = S_IFLNK
        case .fifo: type = S_IFIFO
        case .socket: type = S_IFSOCK
        case .characterDevice: type = S_IFCHR
        case .blockDevice: type = S_IFBLK
        }
        fill(st, mode: type | node.mode, links: Int(max(1, node.links)), time: node.mtime)
        st.pointee.st_ctim = timespec(tv_sec: Int(node.ctime.seconds), tv_nsec: Int(node.ctime.nanoseconds))
        st.pointee.st_uid = node.uid
        st.pointee.st_gid = node.gid
        let size = node.kind == .symlink ? UInt64(node.linkTarget?.count ?? 0) : node.size
        st.pointee.st_size = off_t(size)
        st.pointee.st_blocks = blkcnt_t((size + 511) / 512)
        st.pointee.st_rdev = UInt(node.rdev ?? 0)
    }

    func readlink(_ path: [UInt8], _ buffer: UnsafeMutablePointer<CChar>, _ size: Int) -> Int32 {
        let target: [UInt8]
        switch resolve(path) {
        case .failure(let e): return -e.code
        case .success(.virtual(.link(let t, _))): target = Array(t.utf8)
        case .success(.node(let node)) where node.kind == .symlink: target = node.linkTarget ?? []
        case .success: return -EINVAL
        }
        guard size > 0 else { return -EINVAL }
        let n = min(target.count, size - 1)  // FUSE wants it NUL-terminated, cut to fit
        target.withUnsafeBytes { UnsafeMutableRawPointer(buffer).copyMemory(from: $0.baseAddress!, byteCount: n) }
        buffer[n] = 0
        return 0
    }

    func readdir(_ path: [UInt8], _ add: ([UInt8], UnsafePointer<stat>?) -> Bool) -> Int32 {
        var st = stat()
        st.st_mode = S_IFDIR
        _ = add([UInt8(ascii: ".")], &st)
        _ = add([UInt8(ascii: "."), UInt8(ascii: ".")], &st)
        func list(_ tree: ChunkID) -> Int32 {
            do {
                for node in try trees.tree(tree).nodes {
                    Self.fill(&st, node)
                    if add(node.nameBytes, &st) { break }
                }
                return 0
            } catch {
                log("damaged: \(String(decoding: path, as: UTF8.self)): \(error)")
                return -EIO
            }
        }
        switch resolve(path) {
        case .failure(let e): return -e.code
        case .success(.virtual(.directory(let children, _))):
            for name in children.keys.sorted() { if add(Array(name.utf8), nil) { break } }
            return 0
        case .success(.virtual(.snapshot(let tree, _))), .success(.snapshotRoot(let tree, _)):
            return list(tree)
        case .success(.node(let node)):
            guard let sub = node.subtree else { return -ENOTDIR }
            return list(sub)
        case .success: return -ENOTDIR
        }
    }

    func open(_ path: [UInt8], _ handle: UnsafeMutablePointer<UInt64>) -> Int32 {
        switch resolve(path) {
        case .failure(let e): return -e.code
        case .success(.node(let node)) where node.kind == .file:
            do {
                let file = try StoredFile(node, cache: cache)
                handle.pointee = lock.withLock {
                    let h = nextHandle
                    nextHandle += 1
                    files[h] = (file, path)
                    return h
                }
                return 0
            } catch {
                log("damaged: \(String(decoding: path, as: UTF8.self)): \(error)")
                return -EIO
            }
        case .success(.node(let node)) where node.kind == .directory: return -EISDIR
        case .success(.virtual(.directory)), .success(.virtual(.snapshot)), .success(.snapshotRoot): return -EISDIR
        case .success: return -EACCES
        }
    }

    func read(_ handle: UInt64, _ buffer: UnsafeMutableRawBufferPointer, offset: Int64) -> Int32 {
        guard let (file, path) = lock.withLock({ files[handle] }) else { return -EBADF }
        do {
            return Int32(try file.read(at: UInt64(max(0, offset)), into: buffer))
        } catch {
            log("damaged: \(String(decoding: path, as: UTF8.self)): \(error)")
            return -EIO
        }
    }

    func release(_ handle: UInt64) -> Int32 {
        _ = lock.withLock { files.removeValue(forKey: handle) }
        return 0
    }

    func xattrs(_ path: [UInt8]) -> Result<[ExtendedAttribute], Errno> {
        resolve(path).map { if case .node(let node) = $0 { node.xattrs ?? [] } else { [] } }
    }

    func getxattr(_ path: [UInt8], _ name: String, _ value: UnsafeMutableRawBufferPointer) -> Int32 {
        switch xattrs(path) {
        case .failure(let e): return -e.code
        case .success(let list):
            guard let x = list.first(where: { $0.name == name }) else { return -ENODATA }
            if value.count == 0 { return Int32(x.value.count) }
            guard value.count >= x.value.count else { return -ERANGE }
            x.value.withUnsafeBytes { if $0.count > 0 { value.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            return Int32(x.value.count)
        }
    }

    func listxattr(_ path: [UInt8], _ list: UnsafeMutableRawBufferPointer) -> Int32 {
        switch xattrs(path) {
        case .failure(let e): return -e.code
        case .success(let xs):
            let bytes: [UInt8] = xs.flatMap { Array($0.name.utf8) + [0] }
            if list.count == 0 { return Int32(bytes.count) }
            guard list.count >= bytes.count else { return -ERANGE }
            bytes.withUnsafeBytes { if $0.count > 0 { list.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            return Int32(bytes.count)
        }
    }

    // MARK: Serving

    /// Mounts at `mountpoint` and serves until unmounted or SIGINT/SIGTERM/SIGHUP.
    /// - Returns: libfuse's result (0: served and unmounted; 1: could not set up; 2: the mount failed).
    public func serve(mountpoint: String, name: String, allowOther: Bool) -> Int32 {
        var ops = cfuse_operations()
        ops.context = Unmanaged.passUnretained(self).toOpaque()
        ops.getattr = { ctx, path, st in SnapshotFilesystem.from(ctx).getattr(SnapshotFilesystem.bytes(path!), st!) }
        ops.readlink = { ctx, path, buffer, size in SnapshotFilesystem.from(ctx).readlink(SnapshotFilesystem.bytes(path!), buffer!, size) }
        ops.readdir = { ctx, path, buffer, fill in
            SnapshotFilesystem.from(ctx).readdir(SnapshotFilesystem.bytes(path!)) { name, st in
                (name + [0]).withUnsafeBufferPointer { n in n.withMemoryRebound(to: CChar.self) { fill!(buffer, $0.baseAddress, st) != 0 } }
            }
        }
        ops.open = { ctx, path, _, handle in SnapshotFilesystem.from(ctx).open(SnapshotFilesystem.bytes(path!), handle!) }
        ops.read = { ctx, handle, buffer, size, offset in
            SnapshotFilesystem.from(ctx).read(handle, UnsafeMutableRawBufferPointer(start: buffer, count: size), offset: offset)
        }
        ops.release = { ctx, handle in SnapshotFilesystem.from(ctx).release(handle) }
        ops.getxattr = { ctx, path, name, value, size in
            SnapshotFilesystem.from(ctx).getxattr(
                SnapshotFilesystem.bytes(path!), String(cString: name!), UnsafeMutableRawBufferPointer(start: value, count: size))
        }
        ops.listxattr = { ctx, path, list, size in
            SnapshotFilesystem.from(ctx).listxattr(SnapshotFilesystem.bytes(path!), UnsafeMutableRawBufferPointer(start: list, count: size))
        }
        return withExtendedLifetime(self) { cfuse_serve(mountpoint, name, allowOther ? 1 : 0, &ops) }
    }

    /// A C string's bytes, whatever their encoding.
    private static func bytes(_ text: UnsafePointer<CChar>) -> [UInt8] {
        UnsafeRawBufferPointer(start: text, count: strlen(text)).map { $0 }
    }

    private static func from(_ context: UnsafeMutableRawPointer?) -> SnapshotFilesystem {
        Unmanaged<SnapshotFilesystem>.fromOpaque(context!).takeUnretainedValue()
    }
}
