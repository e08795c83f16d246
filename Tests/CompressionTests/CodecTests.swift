import Compression
import Testing

@Suite("Codecs")
struct CodecTests {
    static let codecs: [Codec] = [
        .none, .lz4, .zstd(level: 1), .zstd(level: 3), .zstd(level: -5), .zstd(level: 19), .zlib(level: 1), .zlib(level: 9),
    ]

    static func random(_ n: Int) -> [UInt8] {
        var x: UInt64 = 0x1234_5678_9abc_def1
        return (0..<n).map { _ in
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            return UInt8(truncatingIfNeeded: x)
        }
    }

    static let text = Array(String(repeating: "The freeze window is application downtime; keep it short. ", count: 4000).utf8)

    @Test("every codec round-trips random, zero and text data", arguments: codecs)
    func roundTrip(_ codec: Codec) throws {
        let compressor = Compressor(codec: codec)
        for data in [Self.random(100_000), [UInt8](repeating: 0, count: 1 << 20), Self.text, [1]] {
            let (kind, stored) = data.withUnsafeBytes { raw in
                let r = compressor.compress(raw)
                return (r.kind, Array(r.bytes))
            }
            let back = try Compressor(codec: .none).decompress(stored, kind: kind, rawLength: data.count)
            #expect(back == data)
        }
    }

    @Test("compressible data is stored compressed with the chosen codec", arguments: codecs.filter { $0 != .none })
    func compressesText(_ codec: Codec) {
        let compressor = Compressor(codec: codec)
        let (kind, count) = Self.text.withUnsafeBytes { raw in
            let r = compressor.compress(raw)
            return (r.kind, r.bytes.count)
        }
        #expect(kind == codec.kind)
        #expect(count < Self.text.count / 4)
    }

    @Test("auto-raw: incompressible data is stored raw", arguments: codecs)
    func autoRaw(_ codec: Codec) {
        let data = Self.random(1 << 20)
        let compressor = Compressor(codec: codec)
        let (kind, count) = data.withUnsafeBytes { raw in
            let r = compressor.compress(raw)
            return (r.kind, r.bytes.count)
        }
        #expect(kind == .none)
        #expect(count == data.count)
    }

    @Test("codec specs parse and print back; bad ones name the problem")
    func parsing() throws {
        for text in ["none", "lz4", "zstd:1", "zstd:-7", "zstd:19", "zlib:1", "zlib:9"] {
            #expect(try Codec(parsing: text).description == text)
        }
        #expect(try Codec(parsing: "zstd") == .zstd(level: 1))
        for bad in ["gzip", "zlib:0", "zlib:10", "zstd:99", "lz4:3", "zstd:x"] {
            #expect(throws: CodecError.self) { try Codec(parsing: bad) }
        }
    }

    @Test("corrupt compressed data is an error, not a crash", arguments: [Codec.lz4, .zstd(level: 1), .zlib(level: 6)])
    func corruptInput(_ codec: Codec) {
        let compressor = Compressor(codec: codec)
        var stored = Self.text.withUnsafeBytes { Array(compressor.compress($0).bytes) }
        stored[stored.count / 2] ^= 0xff
        stored.removeLast(stored.count / 3)
        #expect(throws: CodecError.self) {
            _ = try Compressor(codec: .none).decompress(stored, kind: codec.kind, rawLength: Self.text.count)
        }
    }
}
