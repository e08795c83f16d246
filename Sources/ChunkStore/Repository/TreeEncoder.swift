import Foundation

/// Writes a tree's JSON directly into bytes. Foundation's JSONEncoder builds an intermediate value per
/// element — hundreds of bytes per chunk id of a large file's content list — so a file of a million
/// chunks cost hundreds of megabytes to encode; this writer costs the output and nothing else. The
/// output is what `Tree`'s Codable form reads: keys sorted, as docs/FORMAT.md describes.
struct TreeEncoder {
    private(set) var out: [UInt8] = []

    static func encode(_ tree: Tree) -> [UInt8] {
        var e = TreeEncoder()
        e.out.reserveCapacity(256 + tree.nodes.reduce(0) { $0 + 200 + 67 * ($1.content?.count ?? 0) })
        e.raw("{\"nodes\":[")
        for (i, node) in tree.nodes.enumerated() {
            if i > 0 { e.byte(",") }
            e.node(node)
        }
        e.raw("]}")
        return e.out
    }

    private mutating func node(_ n: Node) {
        byte("{")
        var first = true
        func key(_ k: String) {
            if !first { byte(",") }
            first = false
            string(k)
            byte(":")
        }
        func ids(_ name: String, _ list: [ChunkID]?) {
            guard let list else { return }
            key(name)
            byte("[")
            for (i, id) in list.enumerated() {
                if i > 0 { byte(",") }
                hexID(id)
            }
            byte("]")
        }
        ids("content", n.content)
        ids("contentLists", n.contentLists)
        key("ctime"); timestamp(n.ctime)
        key("device"); number(n.device)
        key("gid"); number(UInt64(n.gid))
        key("inode"); number(n.inode)
        if let target = n.linkTarget {
            if let s = String(validating: target, as: UTF8.self) {
                key("linkTarget"); string(s)
            } else {
                key("linkTargetBase64"); string(Data(target).base64EncodedString())
            }
        }
        key("links"); number(n.links)
        key("mode"); number(UInt64(n.mode))
        key("mtime"); timestamp(n.mtime)
        if let s = String(validating: n.nameBytes, as: UTF8.self) {
            key("name"); string(s)
        } else {
            key("nameBase64"); string(Data(n.nameBytes).base64EncodedString())
        }
        if let rdev = n.rdev { key("rdev"); number(rdev) }
        if n.kind == .file { key("size"); number(n.size) }
        if let sparse = n.sparse { key("sparse"); raw(sparse ? "true" : "false") }
        if let subtree = n.subtree { key("subtree"); hexID(subtree) }
        key("type"); string(n.kind.rawValue)
        key("uid"); number(UInt64(n.uid))
        if let xattrs = n.xattrs {
            key("xattrs")
            byte("[")
            for (i, x) in xattrs.enumerated() {
                if i > 0 { byte(",") }
                raw("{\"name\":")
                string(x.name)
                raw(",\"value\":")
                string(Data(x.value).base64EncodedString())
                byte("}")
            }
            byte("]")
        }
        byte("}")
    }

    private mutating func byte(_ c: Unicode.Scalar) { out.append(UInt8(ascii: c)) }
    private mutating func raw(_ s: String) { out.append(contentsOf: s.utf8) }
    private mutating func number(_ v: UInt64) { raw(String(v)) }

    private mutating func timestamp(_ t: Timestamp) {
        byte("[")
        raw(String(t.seconds))
        byte(",")
        raw(String(t.nanoseconds))
        byte("]")
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    private mutating func hexID(_ id: ChunkID) {
        out.append(UInt8(ascii: "\""))
        for w in [id.w0, id.w1, id.w2, id.w3] {
            for shift in stride(from: 60, through: 0, by: -4) { out.append(Self.hexDigits[Int((w >> UInt64(shift)) & 15)]) }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A JSON string: quotes, backslashes and control characters escaped.
    private mutating func string(_ s: String) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case 0x0A: raw("\\n")
            case 0x0D: raw("\\r")
            case 0x09: raw("\\t")
            case 0..<0x20:
                raw("\\u00")
                out.append(Self.hexDigits[Int(b >> 4)])
                out.append(Self.hexDigits[Int(b & 15)])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
