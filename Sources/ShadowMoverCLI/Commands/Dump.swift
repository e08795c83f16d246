import ArgumentParser
import ChunkStore
import DataMover
import DurableFile
import Foundation

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one file of a snapshot to stdout, or a directory as a tar or zip archive.",
        discussion: """
            PATH is as backed up (e.g. /srv/app/config.toml); '/' is the whole snapshot. A file is \
            written as it is; a directory (or any path with --archive) as an archive whose entries are \
            named from the path's own name down, the way `restore --path` names them. Every chunk is \
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

        func write(to sink: ByteSink) throws {
            if let format {
                let writer: ArchiveWriter = format == .tar ? TarWriter(sink: sink) : ZipWriter(sink: sink)
                let name: [UInt8] = node == nil ? [] : Array(Self.baseName(path).utf8)
                try dump.archive(node, name: name, root: record.tree, path: node == nil ? "" : Self.normalized(path), into: writer)
            } else {
                try dump.writeContent(of: node!, path: path) { bytes in try sink.write(bytes) }
                try sink.flush()
            }
        }
        do {
            if let target {
                // Written beside the target and renamed over it when complete: a failed dump leaves
                // whatever was there, never a partial file that looks whole.
                let url = URL(fileURLWithPath: target)
                try DurableFile.throughTemp(directory: url.deletingLastPathComponent().path, mode: 0o644) { fd, _ in
                    try write(to: ByteSink(fd: fd, name: target))
                    return url.lastPathComponent
                }
            } else {
                if format != nil && isatty(STDOUT_FILENO) == 1 {
                    throw CommandError("stdout is a terminal: redirect it (> \(Self.baseName(path)).\(format!.rawValue)) or give --target FILE")
                }
                try write(to: ByteSink(fd: STDOUT_FILENO, name: "stdout"))
            }
        } catch let damaged as SnapshotDump.Damaged {
            Output.warn("damaged: \(damaged)")
            throw ExitCode(3)
        }
        for s in dump.skipped { Output.warn("left out: \(s): a \(format!.rawValue) archive cannot hold it") }
    }

    static func normalized(_ path: String) -> String { "/" + path.split(separator: "/").filter { $0 != "." }.joined(separator: "/") }
    static func baseName(_ path: String) -> String { path.split(separator: "/").last.map(String.init) ?? "snapshot" }
}
