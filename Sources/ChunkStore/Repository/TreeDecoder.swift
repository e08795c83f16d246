import Foundation

/// Reads a tree's JSON straight into nodes. Foundation's JSONDecoder materialises every value first —
/// hundreds of bytes per chunk id of a large file's content list — which made restore and prune of a
/// file of a million chunks cost hundreds of megabytes. Accepts any JSON whitespace and key order and
/// skips unknown keys, so trees from other writers of the format still read.
struct TreeDecoder {
    struct Malformed: Error, CustomStringConvertible {
        var offset: Int
        var reason: String
        var description: String { "malformed tree JSON at byte \(offset): \(reason)" }
    }

    private let b: [UInt8]
    private var i = 0

    static func decode(_ bytes: [UInt8]) throws -> Tree {
        var d = TreeDecoder(b: bytes)
        var nodes: [Node] = []
        try d.object { d, key in
            if key == "nodes" {
                try d.array { d in nodes.append(try d.node()) }
            } else {
                try d.skipValue()
            }
        }
        d.whitespace()
        guard d.i == d.b.count else { throw Malformed(offset: d.i, reason: "trailing bytes") }
        try Tree.checkNames(nodes)
        var tree = Tree(nodes: [])
        tree.nodes = nodes  // already in the writer's order, which `checkNames` proved sorted
        return tree
    }

    private init(b: [UInt8]) { self.b = b }

    /// Objects and arrays nest at most this deep: a tree's deepest value is an xattr's name (3 levels
    /// below the tree object); the limit leaves room for unknown keys of later writers while keeping a
    /// crafted `[[[[…` from exhausting the stack.
    static let maximumNesting = 32
    private var nesting = 0

    private mutating func enter() throws {
        nesting += 1
        guard nesting <= Self.maximumNesting else { throw Malformed(offset: i, reason: "values nest deeper than \(Self.maximumNesting) levels") }
    }

    private mutating func node() throws -> Node {
        var name: [UInt8]?
        var kind: Node.Kind?
        var mode: UInt32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
        var mtime = Timestamp(seconds: 0, nanoseconds: 0), ctime = mtime
        var size: UInt64 = 0, device: UInt64 = 0, inode: UInt64 = 0, links: UInt64 = 0
        var content: [ChunkID]?, contentLists: [ChunkID]?, sparse: Bool?, subtree: ChunkID?, linkTarget: [UInt8]?, rdev: UInt64?
        var xattrs: [ExtendedAttribute]?
        try object { d, key in
            switch key {
            case "name": name = Array(try d.string().utf8)
            case "nameBase64": name = try d.base64()
            case "type":
                let t = try d.string()
                guard let k = Node.Kind(rawValue: t) else { throw Malformed(offset: d.i, reason: "unknown type \(t)") }
                kind = k
            case "mode": mode = UInt32(truncatingIfNeeded: try d.unsigned())
            case "uid": uid = UInt32(truncatingIfNeeded: try d.unsigned())
            case "gid": gid = UInt32(truncatingIfNeeded: try d.unsigned())
            case "mtime": mtime = try d.timestamp()
            case "ctime": ctime = try d.timestamp()
            case "size": size = try d.unsigned()
            case "device": device = try d.unsigned()
            case "inode": inode = try d.unsigned()
            case "links": links = try d.unsigned()
            case "rdev": rdev = try d.unsigned()
            case "sparse": sparse = try d.bool()
            case "subtree": subtree = try d.id()
            case "linkTarget": linkTarget = Array(try d.string().utf8)
            case "linkTargetBase64": linkTarget = try d.base64()
            case "content":
                var ids: [ChunkID] = []
                try d.array { d in ids.append(try d.id()) }
                content = ids
            case "contentLists":
                var ids: [ChunkID] = []
                try d.array { d in ids.append(try d.id()) }
                contentLists = ids
            case "xattrs":
                var list: [ExtendedAttribute] = []
                try d.array { d in
                    var n = "", v: [UInt8] = []
                    try d.object { d, k in
                        if k == "name" { n = try d.string() } else if k == "value" { v = try d.base64() } else { try d.skipValue() }
                    }
                    list.append(ExtendedAttribute(name: n, value: v))
                }
                xattrs = list
            default: try d.skipValue()
            }
        }
        guard let name, let kind else { throw Malformed(offset: i, reason: "a node without name or type") }
        var node = Node(
            nameBytes: name, kind: kind, mode: mode, uid: uid, gid: gid, mtime: mtime, ctime: ctime, size: size, device: device, inode: inode, links: links)
        node.content = content
        node.contentLists = contentLists
        node.sparse = sparse
        node.subtree = subtree
        node.linkTarget = linkTarget
        node.rdev = rdev
        node.xattrs = xattrs
        return node
    }

    // MARK: JSON pieces

    private mutating func whitespace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    private mutating func expect(_ c: UInt8) throws {
        whitespace()
        guard i < b.count, b[i] == c else { throw Malformed(offset: i, reason: "expected '\(Character(Unicode.Scalar(c)))'") }
        i += 1
    }

    private mutating func peek() -> UInt8? {
        whitespace()
        return i < b.count ? b[i] : nil
    }

    private mutating func object(_ member: (inout TreeDecoder, String) throws -> Void) throws {
        try expect(UInt8(ascii: "{"))
        try enter()
        defer { nesting -= 1 }
        if peek() == UInt8(ascii: "}") { i += 1; return }
        while true {
            let key = try string()
            try expect(UInt8(ascii: ":"))
            try member(&self, key)
            if peek() == UInt8(ascii: ",") { i += 1; continue }
            try expect(UInt8(ascii: "}"))
            return
        }
    }

    private mutating func array(_ element: (inout TreeDecoder) throws -> Void) throws {
        try expect(UInt8(ascii: "["))
        try enter()
        defer { nesting -= 1 }
        if peek() == UInt8(ascii: "]") { i += 1; return }
        while true {
            try element(&self)
            if peek() == UInt8(ascii: ",") { i += 1; continue }
            try expect(UInt8(ascii: "]"))
            return
        }
    }

    private mutating func string() throws -> String {
        try expect(UInt8(ascii: "\""))
        var out = [UInt8]()
        while i < b.count {
            let c = b[i]
            i += 1
            switch c {
            case UInt8(ascii: "\""): return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard i < b.count else { break }
                let e = b[i]
                i += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar), i + 1 < b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") {
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw Malformed(offset: i, reason: "a high surrogate without its low one") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    out.append(contentsOf: String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8)
                default: out.append(e)  // \" \\ \/
                }
            default: out.append(c)
            }
        }
        throw Malformed(offset: i, reason: "unterminated string")
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count, b[i..<(i + 4)].allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }),
            let v = UInt32(String(decoding: b[i..<(i + 4)], as: UTF8.self), radix: 16)
        else {
            throw Malformed(offset: i, reason: "bad \\u escape")
        }
        i += 4
        return v
    }

    private mutating func unsigned() throws -> UInt64 {
        whitespace()
        var v: UInt64 = 0
        let start = i
        while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(b[i] - 0x30))
            guard !o1, !o2 else { throw Malformed(offset: i, reason: "number too large") }
            v = s
            i += 1
        }
        guard i > start else { throw Malformed(offset: i, reason: "expected a number") }
        return v
    }

    private mutating func signed() throws -> Int64 {
        let negative = peek() == UInt8(ascii: "-")
        if negative { i += 1 }
        let magnitude = try unsigned()
        guard magnitude <= UInt64(Int64.max) else { throw Malformed(offset: i, reason: "number out of range") }
        return negative ? -Int64(magnitude) : Int64(magnitude)
    }

    private mutating func timestamp() throws -> Timestamp {
        var parts: [Int64] = []
        try array { d in parts.append(try d.signed()) }
        guard parts.count == 2, (0..<1_000_000_000).contains(parts[1]) else {
            throw Malformed(offset: i, reason: "a time is [seconds, nanoseconds below 10^9]")
        }
        return Timestamp(seconds: parts[0], nanoseconds: Int32(parts[1]))
    }

    private mutating func bool() throws -> Bool {
        whitespace()
        if b[i...].starts(with: Array("true".utf8)) { i += 4; return true }
        if b[i...].starts(with: Array("false".utf8)) { i += 5; return false }
        throw Malformed(offset: i, reason: "expected true or false")
    }

    private mutating func id() throws -> ChunkID {
        let text = try string()
        guard let id = ChunkID(hex: text) else { throw Malformed(offset: i, reason: "bad id \(text)") }
        return id
    }

    private mutating func base64() throws -> [UInt8] {
        let text = try string()
        guard let data = Data(base64Encoded: text) else { throw Malformed(offset: i, reason: "bad base64") }
        return Array(data)
    }

    private mutating func skipValue() throws {
        switch peek() {
        case UInt8(ascii: "{"): try object { d, _ in try d.skipValue() }
        case UInt8(ascii: "["): try array { d in try d.skipValue() }
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "t"), UInt8(ascii: "f"): _ = try bool()
        case UInt8(ascii: "n"):
            guard b[i...].starts(with: Array("null".utf8)) else { throw Malformed(offset: i, reason: "bad literal") }
            i += 4
        default:
            if peek() == UInt8(ascii: "-") { i += 1 }
            _ = try unsigned()
            if peek() == UInt8(ascii: ".") { i += 1; _ = try unsigned() }
        }
    }
}
