import Foundation

/// A mounted filesystem: what a shadow copy is taken of.
public struct Volume: Hashable, Sendable, Codable, CustomStringConvertible {
    /// `major:minor` of the mount, as /proc/self/mountinfo gives it.
    public var device: String
    /// Where it is mounted.
    public var mountPoint: String
    /// The filesystem type (btrfs, xfs, ext4, …).
    public var fsType: String
    /// The mounted device or source.
    public var source: String
    /// The path inside the filesystem that is mounted here (a btrfs subvolume, a bind mount's source).
    public var root: String
    /// Mounted read-only.
    public var readOnly: Bool

    /// A volume as mountinfo describes it.
    public init(device: String, mountPoint: String, fsType: String, source: String, root: String, readOnly: Bool) {
        self.device = device
        self.mountPoint = mountPoint
        self.fsType = fsType
        self.source = source
        self.root = root
        self.readOnly = readOnly
    }

    /// "MOUNTPOINT (TYPE on SOURCE, DEVICE)".
    public var description: String { "\(mountPoint) (\(fsType) on \(source), \(device))" }
}

/// Files → volumes, by longest mount-point prefix over /proc/self/mountinfo.
public enum Mounts {
    /// Every mount, in mountinfo order (later entries are mounted over earlier ones).
    public static func load(from path: String = "/proc/self/mountinfo") throws -> [Volume] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ShadowCopyError.mounts("cannot read \(path)")
        }
        return text.split(separator: "\n").compactMap(parse)
    }

    /// Parses one mountinfo line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTIONS`.
    public static func parse(_ line: Substring) -> Volume? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
        let options = fields[5].split(separator: ",")
        return Volume(
            device: String(fields[2]), mountPoint: unescape(fields[4]), fsType: String(fields[dash + 1]),
            source: unescape(fields[dash + 2]), root: unescape(fields[3]), readOnly: options.contains("ro"))
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: Substring) -> String {
        var out = [UInt8]()
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count,
                let v = UInt8(String(decoding: bytes[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                out.append(v)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The volume holding `path` (symlinks resolved).
    public static func volume(for path: String, in mounts: [Volume]) throws -> Volume {
        guard let real = realPath(path) else { throw ShadowCopyError.pathMissing(path) }
        var best: Volume?
        for m in mounts where isPrefix(m.mountPoint, of: real) {
            if best == nil || m.mountPoint.count >= best!.mountPoint.count { best = m }
        }
        guard let best else { throw ShadowCopyError.mounts("no mount holds \(path)") }
        return best
    }

    static func isPrefix(_ prefix: String, of path: String) -> Bool {
        prefix == "/" || path == prefix || path.hasPrefix(prefix + "/")
    }

    /// The path with symlinks resolved, nil when it does not exist.
    public static func realPath(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }
}
