import ArgumentParser
import ChunkStore
import DataMover
import Foundation

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one file of a snapshot to stdout, or a directory as a tar or zip archive.",
        discussion: """
            PATH is as backed up (e.g. /srv/app/config.toml); '/' is the whole snapshot. A file is
            written as it is; a directory (or any path with --archive) as an archive whose entries are
            named from the path's own name down, the way `restore --path` names them. Every chunk is
            verified first. An archive is not written to a terminal: redirect stdout or give --target.
            """)

    enum ArchiveKind: String, ExpressibleByArgument, CaseIterable { case tar, zip }

    @OptionGroup var storeOptions: StoreOptions

    @Argument(help: "Snapshot id (a unique prefix) or 'latest'.") var snapshot: String
    @Argument(help: "The path in the snapshot.") var path: String
    @Option(help: "Write an archive of this format (default for a directory: tar).") var archive: ArchiveKind?
    @Option(help: ArgumentHelp("Write to this file instead of stdout.", valueName: "file")) var target: String?

    func run() throws {
        let store = try storeOptions.open()
        let (id, record) = try store.resolveSnapshot(snapshot)
        let lock = try StoreLock.acquire(store, exclusive: false, purpose: "dump")
        defer { lock.release() }
        let dump = SnapshotDump(store: store)
        let node: Node?
        switch try dump.trees.lookup(path, root: record.tree) {
        case .root: node = nil
        case .entry(let n): node = n
        case .missing(let nearest):
            throw CommandError(
                "\(path) is not in snapshot \(id.prefix(8)); the nearest path that is: \(nearest) (list it with `shadowmover ls \(id.prefix(8)) \(nearest)`)")
        }
        let format = archive ?? (node?.kind == .file ? nil : .tar)
        if format == nil && node?.kind != .file { throw ValidationError("\(path) is a \(node?.kind.rawValue ?? "directory"): give --archive tar or zip") }

        let fd: Int32
        if let target {
            fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw CommandError("cannot create \(target): \(String(cString: strerror(errno)))") }
        } else {
            if format != nil && isatty(STDOUT_FILENO) == 1 {
                throw CommandError("stdout is a terminal: redirect it (> \(Self.baseName(path)).\(format!.rawValue)) or give --target FILE")
            }
            fd = STDOUT_FILENO
        }
        let sink = ByteSink(fd: fd, name: target ?? "stdout")
        do {
            if let format {
                let writer: ArchiveWriter = format == .tar ? TarWriter(sink: sink) : ZipWriter(sink: sink)
                let name: [UInt8] = node == nil ? [] : Array(Self.baseName(path).utf8)
                try dump.archive(node, name: name, root: record.tree, path: node == nil ? "" : Self.normalized(path), into: writer)
            } else {
                try dump.writeContent(of: node!, path: path) { bytes in try sink.write(bytes) }
                try sink.flush()
            }
        } catch {
            // A partial file would look like a whole one.
            if let target { close(fd); unlink(target) }
            if error is SnapshotDump.Damaged { Output.warn("damaged: \(error)"); throw ExitCode(3) }
            throw error
        }
        if target != nil { close(fd) }
        for s in dump.skipped { Output.warn("left out: \(s): a \(format!.rawValue) archive cannot hold it") }
    }

    static func normalized(_ path: String) -> String { "/" + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/") }
    static func baseName(_ path: String) -> String { path.split(separator: "/").last.map(String.init) ?? "snapshot" }
}
