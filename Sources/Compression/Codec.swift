/// How a blob's bytes are compressed. Every stored blob records its codec (one byte, `Codec.Kind`),
/// so one store can hold a mix and the default can change at any time.
public enum Codec: Sendable, Equatable, Hashable, CustomStringConvertible {
    case none
    case lz4
    /// zstd at any level its library accepts, negative ("fast") levels included.
    case zstd(level: Int32)
    /// zlib (deflate with zlib framing), levels 1–9.
    case zlib(level: Int32)

    /// DESIGN.md §4: zstd level 1 — close to lz4's speed with a markedly better ratio.
    public static let `default` = Codec.zstd(level: 1)

    /// The on-disk codec byte; the level is not needed to decode and is not stored.
    public enum Kind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        case none = 0
        case lz4 = 1
        case zstd = 2
        case zlib = 3

        /// As written on the command line: `zstd:3`, `lz4`, `none`.
        public var description: String {
            switch self {
            case .none: "none"
            case .lz4: "lz4"
            case .zstd: "zstd"
            case .zlib: "zlib"
            }
        }
    }

    /// The codec without its level, as blob entries record it.
    public var kind: Kind {
        switch self {
        case .none: .none
        case .lz4: .lz4
        case .zstd: .zstd
        case .zlib: .zlib
        }
    }

    /// `none`, `lz4`, `zstd`, `zstd:LEVEL`, `zlib`, `zlib:LEVEL` — the form used on the command line and
    /// in the store's config.
    public var description: String {
        switch self {
        case .none: "none"
        case .lz4: "lz4"
        case .zstd(let level): "zstd:\(level)"
        case .zlib(let level): "zlib:\(level)"
        }
    }

    /// Parses the form `description` prints.
    public init(parsing text: String) throws {
        let parts = text.lowercased().split(separator: ":", maxSplits: 1).map(String.init)
        let name = parts.first ?? ""
        let level: Int32?
        if parts.count == 2 {
            guard let parsed = Int32(parts[1]) else { throw CodecError.badSpec(text) }
            level = parsed
        } else {
            level = nil
        }
        switch name {
        case "none" where level == nil: self = .none
        case "lz4" where level == nil: self = .lz4
        case "zstd":
            let l = level ?? 1
            guard (Compressor.zstdMinLevel...Compressor.zstdMaxLevel).contains(l), l != 0 else {
                throw CodecError.badLevel(text, "zstd levels run from \(Compressor.zstdMinLevel) to \(Compressor.zstdMaxLevel), 0 excluded")
            }
            self = .zstd(level: l)
        case "zlib":
            let l = level ?? 6
            guard (1...9).contains(l) else { throw CodecError.badLevel(text, "zlib levels run from 1 to 9") }
            self = .zlib(level: l)
        default: throw CodecError.badSpec(text)
        }
    }
}

/// A codec name or level that cannot be used.
public enum CodecError: Error, CustomStringConvertible, Equatable {
    case badSpec(String)
    case badLevel(String, String)
    case corrupt(Codec.Kind, String)
    case unknownKind(UInt8)

    /// What was given and what may be.
    public var description: String {
        switch self {
        case .badSpec(let text):
            "unknown codec '\(text)': use none, lz4, zstd[:LEVEL] or zlib[:LEVEL]"
        case .badLevel(let text, let rule): "codec '\(text)' has a bad level: \(rule)"
        case .corrupt(let kind, let detail): "\(kind) data is corrupt: \(detail)"
        case .unknownKind(let byte): "unknown codec byte \(byte): written by a newer shadowmover?"
        }
    }
}
