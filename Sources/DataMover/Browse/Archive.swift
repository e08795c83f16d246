import CZlib
import ChunkStore
import Foundation

/// An archive format `dump` writes a directory of a snapshot as.
public protocol ArchiveWriter: AnyObject {
    /// Adds one entry. `path` is relative (no leading `/`); `hardLinkTo`, when set, is the path of an
    /// entry already added for the same file; `content` writes a file's bytes through the callback.
    func add(path: [UInt8], node: Node, hardLinkTo: [UInt8]?, content: ((_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void)?) throws
    /// Writes whatever ends the archive.
    func finish() throws
    /// Entries the format cannot hold (sockets in tar; devices, FIFOs and sockets in zip).
    func canHold(_ kind: Node.Kind) -> Bool
}

/// POSIX.1-2001 (pax) tar: ustar headers, with a pax extended header for what ustar cannot say (long
/// names and link targets, sizes of 8 GiB and more, large ids, sub-second times, extended attributes
/// as `SCHILY.xattr.*` the way GNU tar writes them). GNU tar and bsdtar read it.
public final class TarWriter: ArchiveWriter {
    private let sink: ByteSink

    /// A tar archive written to `sink`.
    public init(sink: ByteSink) { self.sink = sink }

    /// Every kind but sockets.
    public func canHold(_ kind: Node.Kind) -> Bool { kind != .socket }

    /// Adds a pax header where ustar cannot say it all, the ustar header, and a file's bytes padded to 512.
    public func add(path: [UInt8], node: Node, hardLinkTo: [UInt8]?, content: ((_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void)?) throws {
        var name = path
        if node.kind == .directory && name.last != UInt8(ascii: "/") { name.append(UInt8(ascii: "/")) }
        let link = hardLinkTo ?? (node.kind == .symlink ? node.linkTarget ?? [] : [])
        let size: UInt64 = hardLinkTo == nil && node.kind == .file ? node.size : 0
        var pax: [(String, [UInt8])] = []
        if name.count > 100 { pax.append(("path", name)) }
        if link.count > 100 { pax.append(("linkpath", link)) }
        if size >= 0o77777777777 { pax.append(("size", Array(String(size).utf8))) }
        if node.uid >= 0o7777777 { pax.append(("uid", Array(String(node.uid).utf8))) }
        if node.gid >= 0o7777777 { pax.append(("gid", Array(String(node.gid).utf8))) }
        if node.mtime.nanoseconds != 0 || node.mtime.seconds < 0 || node.mtime.seconds >= 0o77777777777 {
            pax.append(("mtime", Array(Self.decimal(node.mtime).utf8)))
        }
        for x in node.xattrs ?? [] { pax.append(("SCHILY.xattr." + x.name, x.value)) }
        if !pax.isEmpty {
            var records: [UInt8] = []
            for (key, value) in pax { records += Self.paxRecord(key, value) }
            try sink.write(
                header(
                    name: Array(("PaxHeaders/" + String(decoding: name.suffix(80), as: UTF8.self)).utf8).prefix(100).map { $0 }, mode: 0o644, uid: 0, gid: 0,
                    size: UInt64(records.count), mtime: 0, type: UInt8(ascii: "x"), link: [], rdev: nil))
            try sink.write(records)
            try pad(records.count)
        }
        let type: UInt8
        switch node.kind {
        case _ where hardLinkTo != nil: type = UInt8(ascii: "1")
        case .file: type = UInt8(ascii: "0")
        case .directory: type = UInt8(ascii: "5")
        case .symlink: type = UInt8(ascii: "2")
        case .characterDevice: type = UInt8(ascii: "3")
        case .blockDevice: type = UInt8(ascii: "4")
        case .fifo: type = UInt8(ascii: "6")
        case .socket: throw StoreError.archiveCannotHold(path: String(decoding: path, as: UTF8.self), kind: "socket", format: "tar")
        }
        let clampedTime = max(0, min(node.mtime.seconds, 0o77777777777 - 1))
        try sink.write(
            header(
                name: Array(name.prefix(100)), mode: node.mode, uid: min(node.uid, 0o7777777 - 1), gid: min(node.gid, 0o7777777 - 1),
                size: min(size, 0o77777777777 - 1), mtime: UInt64(clampedTime), type: type, link: Array(link.prefix(100)),
                rdev: node.kind == .characterDevice || node.kind == .blockDevice ? node.rdev ?? 0 : nil))
        guard size > 0, let content else { return }
        var written: UInt64 = 0
        try content { bytes in
            written += UInt64(bytes.count)
            try self.sink.write(bytes)
        }
        guard written == size else {
            throw StoreError.damagedFile(path: String(decoding: path, as: UTF8.self), reason: "\(written) bytes were read of its \(size)")
        }
        try pad(Int(size % 512))
    }

    /// Two zero blocks end the archive.
    public func finish() throws {
        try sink.write([UInt8](repeating: 0, count: 1024))
        try sink.flush()
    }

    private func pad(_ count: Int) throws {
        let rest = count % 512
        if rest != 0 { try sink.write([UInt8](repeating: 0, count: 512 - rest)) }
    }

    private func header(
        name: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64, mtime: UInt64, type: UInt8, link: [UInt8], rdev: UInt64?
    ) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at offset: Int) { for (i, b) in bytes.enumerated() { h[offset + i] = b } }
        func octal(_ value: UInt64, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            put(Array((String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits).utf8), at: offset)
        }
        put(name, at: 0)
        octal(UInt64(mode & 0o7777), at: 100, width: 8)
        octal(UInt64(uid), at: 108, width: 8)
        octal(UInt64(gid), at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(mtime, at: 136, width: 12)
        h[156] = type
        put(link, at: 157)
        put(Array("ustar\u{0}00".utf8), at: 257)
        if let rdev {
            octal(UInt64(Self.major(rdev)), at: 329, width: 8)
            octal(UInt64(Self.minor(rdev)), at: 337, width: 8)
        }
        // The checksum is computed with its own field as spaces.
        put([UInt8](repeating: 0x20, count: 8), at: 148)
        let sum = h.reduce(0) { $0 + UInt64($1) }
        octal(sum, at: 148, width: 7)
        h[155] = 0x20
        return h
    }

    static func major(_ dev: UInt64) -> UInt64 { ((dev >> 32) & 0xFFFF_F000) | ((dev >> 8) & 0xFFF) }
    static func minor(_ dev: UInt64) -> UInt64 { ((dev >> 12) & 0xFFFF_FF00) | (dev & 0xFF) }

    static func decimal(_ t: Timestamp) -> String {
        t.nanoseconds == 0 ? String(t.seconds) : String(t.seconds) + "." + String(format: "%09d", t.nanoseconds)
    }

    /// "LENGTH KEY=VALUE\n", LENGTH counting itself.
    static func paxRecord(_ key: String, _ value: [UInt8]) -> [UInt8] {
        let body = 1 + key.utf8.count + 1 + value.count + 1
        var length = body + String(body).count
        if String(length).count != String(body).count { length = body + String(length).count }
        return Array("\(length) \(key)=".utf8) + value + [0x0A]
    }
}

/// ZIP with stored (uncompressed) entries — a snapshot's data is often compressed already, and zip's
/// deflate would cost far more than the dump — and ZIP64 for sizes and offsets past 4 GiB. Unix modes
/// and symlinks go in the external attributes, modification times in the 0x5455 extra field, the way
/// Info-ZIP writes them. Devices, FIFOs and sockets have no zip form: they are left out with a warning.
public final class ZipWriter: ArchiveWriter {
    private let sink: ByteSink
    private var central: [UInt8] = []
    private var entries = 0

    /// A zip archive written to `sink`.
    public init(sink: ByteSink) { self.sink = sink }

    /// Files, directories and symlinks.
    public func canHold(_ kind: Node.Kind) -> Bool { kind == .file || kind == .directory || kind == .symlink }

    /// Writes a local header, the bytes, a data descriptor (CRC and sizes follow the data), and keeps the central-directory entry.
    public func add(path: [UInt8], node: Node, hardLinkTo: [UInt8]?, content: ((_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void)?) throws {
        var name = path
        if node.kind == .directory && name.last != UInt8(ascii: "/") { name.append(UInt8(ascii: "/")) }
        let offset = sink.offset
        let size: UInt64 = node.kind == .file ? node.size : node.kind == .symlink ? UInt64(node.linkTarget?.count ?? 0) : 0
        let zip64 = size >= 0xFFFF_FFFF
        let (dosTime, dosDate) = Self.dosTime(node.mtime.seconds)
        let utf8Flag: UInt16 = String(validating: name, as: UTF8.self) != nil ? 0x0800 : 0
        let flags: UInt16 = 0x0008 | utf8Flag  // sizes and CRC follow the data
        let needed: UInt16 = zip64 ? 45 : 20
        let timeExtra = Self.le16(0x5455) + Self.le16(5) + [1] + Self.le32(UInt32(truncatingIfNeeded: max(0, min(node.mtime.seconds, Int64(Int32.max)))))

        var local = Self.le32(0x0403_4B50) + Self.le16(needed) + Self.le16(flags) + Self.le16(0) + Self.le16(dosTime) + Self.le16(dosDate)
        let localExtra = timeExtra + (zip64 ? Self.le16(1) + Self.le16(16) + Self.le64(0) + Self.le64(0) : [])
        local += Self.le32(0) + (zip64 ? Self.le32(0xFFFF_FFFF) + Self.le32(0xFFFF_FFFF) : Self.le32(0) + Self.le32(0))
        local += Self.le16(UInt16(name.count)) + Self.le16(UInt16(localExtra.count)) + name + localExtra
        try sink.write(local)

        var crc: uLong = crc32(0, nil, 0)
        var written: UInt64 = 0
        func emit(_ bytes: UnsafeRawBufferPointer) throws {
            if bytes.isEmpty { return }
            crc = crc32(crc, bytes.baseAddress!.assumingMemoryBound(to: Bytef.self), uInt(bytes.count))
            written += UInt64(bytes.count)
            try sink.write(bytes)
        }
        if node.kind == .symlink {
            try (node.linkTarget ?? []).withUnsafeBytes { try emit($0) }
        } else if node.kind == .file, let content {
            try content { try emit($0) }
        }
        guard written == size else {
            throw StoreError.damagedFile(path: String(decoding: path, as: UTF8.self), reason: "\(written) bytes were read of its \(size)")
        }
        let crcValue = UInt32(truncatingIfNeeded: crc)
        try sink.write(
            Self.le32(0x0807_4B50) + Self.le32(crcValue) + (zip64 ? Self.le64(size) + Self.le64(size) : Self.le32(UInt32(size)) + Self.le32(UInt32(size))))

        let bigOffset = offset >= 0xFFFF_FFFF
        var zip64Extra: [UInt8] = []
        if zip64 { zip64Extra += Self.le64(size) + Self.le64(size) }
        if bigOffset { zip64Extra += Self.le64(offset) }
        let centralExtra = timeExtra + (zip64Extra.isEmpty ? [] : Self.le16(1) + Self.le16(UInt16(zip64Extra.count)) + zip64Extra)
        let typeBits: UInt32 = node.kind == .directory ? 0o040000 : node.kind == .symlink ? 0o120000 : 0o100000
        let external = ((typeBits | (node.mode & 0o7777)) << 16) | (node.kind == .directory ? 0x10 : 0)
        central += Self.le32(0x0201_4B50) + Self.le16(3 << 8 | 45) + Self.le16(needed) + Self.le16(flags) + Self.le16(0)
        central += Self.le16(dosTime) + Self.le16(dosDate) + Self.le32(crcValue)
        central += zip64 ? Self.le32(0xFFFF_FFFF) + Self.le32(0xFFFF_FFFF) : Self.le32(UInt32(size)) + Self.le32(UInt32(size))
        central += Self.le16(UInt16(name.count)) + Self.le16(UInt16(centralExtra.count)) + Self.le16(0) + Self.le16(0) + Self.le16(0)
        central += Self.le32(external) + Self.le32(bigOffset ? 0xFFFF_FFFF : UInt32(offset)) + name + centralExtra
        entries += 1
    }

    /// The central directory (with ZIP64 records where counts or offsets need them) and its end record.
    public func finish() throws {
        let start = sink.offset
        try sink.write(central)
        let end = sink.offset
        let size = end - start
        if entries >= 0xFFFF || start >= 0xFFFF_FFFF || size >= 0xFFFF_FFFF {
            var record = Self.le32(0x0606_4B50) + Self.le64(44) + Self.le16(3 << 8 | 45) + Self.le16(45) + Self.le32(0) + Self.le32(0)
            record += Self.le64(UInt64(entries)) + Self.le64(UInt64(entries)) + Self.le64(size) + Self.le64(start)
            try sink.write(record)
            try sink.write(Self.le32(0x0706_4B50) + Self.le32(0) + Self.le64(end) + Self.le32(1))
        }
        let count = UInt16(min(entries, 0xFFFF))
        try sink.write(
            Self.le32(0x0605_4B50) + Self.le16(0) + Self.le16(0) + Self.le16(count) + Self.le16(count)
                + Self.le32(UInt32(min(size, 0xFFFF_FFFF))) + Self.le32(UInt32(min(start, 0xFFFF_FFFF))) + Self.le16(0))
        try sink.flush()
    }

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> ($0 * 8)) & 0xFF) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8((v >> ($0 * 8)) & 0xFF) } }

    /// MS-DOS time and date (local time, 2-second resolution, 1980–2107).
    static func dosTime(_ seconds: Int64) -> (UInt16, UInt16) {
        var t = time_t(max(315_532_800, seconds))
        var parts = tm()
        localtime_r(&t, &parts)
        let year = max(0, min(127, Int(parts.tm_year) - 80))
        let time = UInt16(parts.tm_hour) << 11 | UInt16(parts.tm_min) << 5 | UInt16(parts.tm_sec / 2)
        let date = UInt16(year) << 9 | UInt16(parts.tm_mon + 1) << 5 | UInt16(parts.tm_mday)
        return (time, date)
    }
}
