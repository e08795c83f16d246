import ArgumentParser
import ChunkStore
import Foundation
import SnapshotMount

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mount the store's snapshots read-only (FUSE) to browse and copy files out.",
        discussion: """
            MOUNTPOINT shows snapshots/<time>/…, latest, ids/<id>/…, hosts/<host>/<time> and \
            tags/<tag>/<time>, with every file's metadata (modes, owners, times, extended attributes, \
            symlinks, devices). Files are read on demand, every chunk verified; damaged data fails the \
            reads of the files it belongs to (EIO) and is logged here. The command stays in the \
            foreground: Ctrl-C, SIGTERM or `umount MOUNTPOINT` unmounts. The snapshots shown are those \
            that existed when it was mounted.
            """)

    @OptionGroup var storeOptions: StoreOptions

    @Argument(help: "An empty directory to mount on.") var mountpoint: String
    @Flag(help: "Let other users see the mount (root, or user_allow_other in /etc/fuse.conf).") var allowOther = false
    @Option(help: ArgumentHelp("Memory for decompressed chunks, in MiB.", valueName: "MiB")) var cacheSize = 64

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: mountpoint, isDirectory: &isDirectory) else {
            throw CommandError("the mountpoint \(mountpoint) does not exist: create it with `mkdir -p \(mountpoint)`")
        }
        guard isDirectory.boolValue else { throw CommandError("the mountpoint \(mountpoint) is not a directory") }
        guard (try FileManager.default.contentsOfDirectory(atPath: mountpoint)).isEmpty else {
            throw CommandError("the mountpoint \(mountpoint) is not empty: mount on an empty directory")
        }
        guard access("/dev/fuse", R_OK | W_OK) == 0 else {
            throw CommandError(
                "FUSE is not available: /dev/fuse \(errno == ENOENT ? "does not exist (load the module: `modprobe fuse`; in a container, pass the device through)" : "cannot be opened: \(String(cString: strerror(errno)))")"
            )
        }
        if getuid() != 0 && !["/usr/bin/fusermount3", "/bin/fusermount3"].contains(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            throw CommandError("mounting as a user needs fusermount3: install the fuse3 package (apt-get install fuse3)")
        }
        let store = try storeOptions.open()
        let lock = try StoreLock.acquire(store, exclusive: false, purpose: "mount")
        defer { lock.release() }
        let filesystem = try SnapshotFilesystem(store: store, cacheBytes: max(1, cacheSize) << 20) { Output.warn($0) }
        Output.warn("mounted the snapshots of \(store.location) at \(mountpoint); Ctrl-C or `umount \(mountpoint)` unmounts")
        let name = store.location.replacingOccurrences(of: ",", with: "_")
        switch filesystem.serve(mountpoint: mountpoint, name: name, allowOther: allowOther) {
        case 0: Output.warn("unmounted \(mountpoint)")
        case 1: throw CommandError("FUSE could not be set up (see libfuse's message above)")
        default: throw CommandError("could not mount on \(mountpoint) (see libfuse's message above)")
        }
    }
}
