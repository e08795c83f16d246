import Foundation

/// A directory listing, stored as a JSON blob of type `tree` (docs/FORMAT.md, "Trees"). Trees are
/// content-addressed like data, so an unchanged directory is stored once across snapshots.
public struct Tree: Sendable, Equatable {
    /// Sorted by name bytes, so identical directories encode identically.
    public var nodes: [Node]

    /// A tree of `nodes`, sorted by name bytes.
    public init(nodes: [Node]) {
        self.nodes = nodes.sorted { $0.nameBytes.lexicographicallyPrecedes($1.nameBytes) }
    }

    /// The largest encoded tree a reader accepts (docs/FORMAT.md, "Validity rules"), and so the largest
    /// a backup writes: about a million entries of small files, or a thousand files of 4,096 inline
    /// chunk ids each. Bounding it lets a reader refuse a crafted length before allocating for it.
    public static let maximumEncodedLength = 256 << 20

    /// Why a directory could not be stored as one tree.
    public struct TooLarge: Error, CustomStringConvertible {
        /// The encoded length that was refused.
        public var length: Int
        /// What happened and what to do.
        public var description: String {
            "the directory listing is \(length) bytes, more than the \(Tree.maximumEncodedLength) one tree may hold: split the directory, or back up its subdirectories separately"
        }
    }

    /// Directories nest at most this deep below a snapshot's root: a path of PATH_MAX (4,096) bytes has
    /// at most 2,048 components, so a backup, which reads by path, cannot make a deeper tree. Readers
    /// that walk trees recursively stop here instead of at the end of their stack.
    public static let maximumDepth = 2048

    /// The tree's JSON bytes (see `TreeEncoder`).
    public func encoded() throws -> [UInt8] {
        let bytes = TreeEncoder.encode(self)
        guard bytes.count <= Self.maximumEncodedLength else { throw TooLarge(length: bytes.count) }
        return bytes
    }

    /// A name a tree may hold: one path component that stays inside its directory — not empty, not
    /// `.` or `..`, without `/` or NUL (docs/FORMAT.md, "Validity rules").
    public static func isValidName(_ name: [UInt8]) -> Bool {
        !name.isEmpty && name != [46] && name != [46, 46] && !name.contains(UInt8(ascii: "/")) && !name.contains(0)
    }

    /// Checks the rules every reader enforces on a tree's entries: valid names, strictly increasing by
    /// bytes (so no name appears twice: restoring two entries of one name would let the second act
    /// through the first, a symlink say).
    static func checkNames(_ nodes: [Node]) throws {
        for (i, node) in nodes.enumerated() {
            guard isValidName(node.nameBytes) else {
                throw InvalidEntry(reason: "entry \(i) has the name \(node.name.debugDescription), which is not a single path component")
            }
            if i > 0 && !nodes[i - 1].nameBytes.lexicographicallyPrecedes(node.nameBytes) {
                let what = nodes[i - 1].nameBytes == node.nameBytes ? "appears twice" : "is out of order"
                throw InvalidEntry(reason: "the name \(node.name.debugDescription) \(what) (entries \(i - 1) and \(i))")
            }
        }
    }

    /// A tree whose entries break the validity rules.
    struct InvalidEntry: Error, CustomStringConvertible {
        var reason: String
        var description: String { reason }
    }

    /// Reads a tree's JSON (see `TreeDecoder`).
    public static func decode(_ bytes: [UInt8]) throws -> Tree { try TreeDecoder.decode(bytes) }
}

/// One entry of a directory with everything needed to restore it.
public struct Node: Sendable, Equatable {
    /// The kind of filesystem entry.
    public enum Kind: String, Codable, Sendable {
        case file, directory, symlink, fifo, socket, characterDevice, blockDevice
    }

    /// The name as the filesystem has it (Linux names are bytes, not necessarily UTF-8).
    public var nameBytes: [UInt8]
    /// What the entry is.
    public var kind: Kind
    /// Permission bits including setuid, setgid and sticky (st_mode & 0o7777).
    public var mode: UInt32
    /// Owner's user id.
    public var uid: UInt32
    /// Owner's group id.
    public var gid: UInt32
    /// Modification time, to the nanosecond.
    public var mtime: Timestamp
    /// Status change time, kept for change detection; restore cannot set it. Access times are not
    /// stored: reading a tree for backup changes them, and an unchanged directory must encode the same.
    public var ctime: Timestamp
    /// Content size in bytes (files).
    public var size: UInt64
    /// Data chunk ids in order (files), when there are at most `ContentList.inlineLimit` of them.
    /// A larger file's ids are stored in content-list blobs instead (`contentLists`), so that a tree
    /// stays small however large its files: read the ids with `Store.content(of:)`.
    public var content: [ChunkID]?
    /// Ids of the content-list blobs holding the chunk ids of a large file, in order.
    public var contentLists: [ChunkID]?
    /// True when the file had holes; restore leaves all-zero chunks as holes.
    public var sparse: Bool?
    /// Tree id (directories).
    public var subtree: ChunkID?
    /// Symlink target bytes (symlinks).
    public var linkTarget: [UInt8]?
    /// Device number (character and block devices).
    public var rdev: UInt64?
    /// Identity for hard links: nodes with links > 1 and the same (device, inode) are restored as links.
    public var device: UInt64
    /// Inode number (with `device`, identifies hard links; also the files cache's key).
    public var inode: UInt64
    /// Link count (files with more than one are restored as hard links).
    public var links: UInt64
    /// Extended attributes, sorted by name.
    public var xattrs: [ExtendedAttribute]?

    /// The name as text (invalid UTF-8 shown with replacement characters).
    public var name: String { String(decoding: nameBytes, as: UTF8.self) }

    /// A node with the metadata every entry has; kind-specific fields are set after.
    public init(
        nameBytes: [UInt8], kind: Kind, mode: UInt32, uid: UInt32, gid: UInt32, mtime: Timestamp, ctime: Timestamp, size: UInt64, device: UInt64, inode: UInt64,
        links: UInt64
    ) {
        self.nameBytes = nameBytes
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.ctime = ctime
        self.size = size
        self.device = device
        self.inode = inode
        self.links = links
    }
}

/// One extended attribute (in a tree's JSON its value is base64: docs/FORMAT.md, "Trees").
public struct ExtendedAttribute: Sendable, Equatable {
    /// The attribute's name, with its namespace ("user.", "security.", …).
    public var name: String
    /// Its value.
    public var value: [UInt8]

    /// An attribute `name` = `value`.
    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }
}
