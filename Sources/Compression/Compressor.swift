import CLZ4
import CZlib
import CZstd

/// Compresses and decompresses blobs. Holds the reusable library contexts and output buffer, so the hot
/// path allocates nothing per blob.
///
/// Not thread-safe: give each worker its own `Compressor`.
public final class Compressor {
    /// A blob whose compressed form is at least this share of its raw size is stored raw: decoding it
    /// would cost time for almost no space.
    public static let autoRawThreshold = 0.97

    /// The lowest zstd level this library takes (negative: faster).
    public static var zstdMinLevel: Int32 { max(ZSTD_minCLevel(), -131072) }
    /// The highest zstd level.
    public static var zstdMaxLevel: Int32 { ZSTD_maxCLevel() }

    /// The codec `compress` uses (any codec can be decompressed).
    public let codec: Codec
    private var zstdC: OpaquePointer?
    private var zstdD: OpaquePointer?
    private var output: UnsafeMutableRawBufferPointer

    /// A compressor for `codec`; contexts are made when first needed.
    public init(codec: Codec) {
        self.codec = codec
        output = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    }

    deinit {
        if let zstdC { ZSTD_freeCCtx(zstdC) }
        if let zstdD { ZSTD_freeDCtx(zstdD) }
        output.deallocate()
    }

    /// Compresses `raw` with this compressor's codec, falling back to storing it raw when that does not
    /// save at least 3%.
    ///
    /// - Returns: the codec actually used and the bytes to store. For `.none` the bytes are `raw` itself;
    ///   otherwise they live in this compressor's buffer and stay valid until its next call.
    public func compress(_ raw: UnsafeRawBufferPointer) -> (kind: Codec.Kind, bytes: UnsafeRawBufferPointer) {
        guard !raw.isEmpty, codec != .none else { return (.none, raw) }
        ensureOutput(Self.bound(raw.count))
        let (kind, count) = compress(raw, into: output)
        return kind == .none ? (.none, raw) : (kind, UnsafeRawBufferPointer(rebasing: output[..<count]))
    }

    /// The largest output `compress(_:into:)` can produce for `rawLength` bytes, whatever the codec.
    public static func bound(_ rawLength: Int) -> Int {
        max(ZSTD_compressBound(rawLength), Int(LZ4_compressBound(Int32(clamping: rawLength))), Int(compressBound(uLong(rawLength))), rawLength) + 64
    }

    /// Compresses `raw` straight into `destination` (at least `bound(raw.count)` bytes), storing it raw
    /// when compression saves less than 3%. - Returns: the codec used and the bytes written.
    public func compress(_ raw: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> (kind: Codec.Kind, count: Int) {
        precondition(destination.count >= raw.count)
        let limit = Int(Double(raw.count) * Self.autoRawThreshold)
        var produced: Int?
        if !raw.isEmpty {
            switch codec {
            case .none: produced = nil
            case .lz4:
                let n = LZ4_compress_default(
                    raw.baseAddress!.assumingMemoryBound(to: CChar.self), destination.baseAddress!.assumingMemoryBound(to: CChar.self),
                    Int32(raw.count), Int32(clamping: min(destination.count, limit)))
                produced = n > 0 ? Int(n) : nil
            case .zstd(let level):
                if zstdC == nil { zstdC = ZSTD_createCCtx() }
                let n = ZSTD_compressCCtx(zstdC, destination.baseAddress, destination.count, raw.baseAddress, raw.count, level)
                produced = ZSTD_isError(n) == 0 ? n : nil
            case .zlib(let level):
                var length = uLongf(destination.count)
                let rc = compress2(
                    destination.baseAddress!.assumingMemoryBound(to: Bytef.self), &length,
                    raw.baseAddress!.assumingMemoryBound(to: Bytef.self), uLong(raw.count), level)
                produced = rc == Z_OK ? Int(length) : nil
            }
        }
        if let produced, produced < limit { return (codec.kind, produced) }
        if !raw.isEmpty { destination.baseAddress!.copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
        return (.none, raw.count)
    }

    /// Decompresses `stored` (written with `kind`) into `destination`, which must be exactly the raw size.
    public func decompress(
        _ stored: UnsafeRawBufferPointer, kind: Codec.Kind, into destination: UnsafeMutableRawBufferPointer
    ) throws {
        switch kind {
        case .none:
            guard stored.count == destination.count else {
                throw CodecError.corrupt(kind, "stored \(stored.count) bytes, expected \(destination.count)")
            }
            if !stored.isEmpty { destination.copyMemory(from: stored) }
        case .lz4:
            let n = LZ4_decompress_safe(
                stored.baseAddress?.assumingMemoryBound(to: CChar.self),
                destination.baseAddress?.assumingMemoryBound(to: CChar.self),
                Int32(stored.count), Int32(destination.count))
            guard n == destination.count else { throw CodecError.corrupt(kind, "decoded \(n) bytes, expected \(destination.count)") }
        case .zstd:
            if zstdD == nil { zstdD = ZSTD_createDCtx() }
            let n = ZSTD_decompressDCtx(
                zstdD, destination.baseAddress, destination.count, stored.baseAddress, stored.count)
            if ZSTD_isError(n) != 0 {
                throw CodecError.corrupt(kind, String(cString: ZSTD_getErrorName(n)))
            }
            guard n == destination.count else { throw CodecError.corrupt(kind, "decoded \(n) bytes, expected \(destination.count)") }
        case .zlib:
            var length = uLongf(destination.count)
            let rc = uncompress(
                destination.baseAddress?.assumingMemoryBound(to: Bytef.self), &length,
                stored.baseAddress?.assumingMemoryBound(to: Bytef.self), uLong(stored.count))
            guard rc == Z_OK, Int(length) == destination.count else {
                throw CodecError.corrupt(kind, "zlib error \(rc), decoded \(length) of \(destination.count) bytes")
            }
        }
    }

    /// Convenience for callers that want an array (tests, tools); the hot path uses `decompress(_:kind:into:)`.
    public func decompress(_ stored: [UInt8], kind: Codec.Kind, rawLength: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: rawLength)
        try stored.withUnsafeBytes { (s: UnsafeRawBufferPointer) throws in
            try out.withUnsafeMutableBytes { (d: UnsafeMutableRawBufferPointer) throws in
                try decompress(s, kind: kind, into: d)
            }
        }
        return out
    }

    private func ensureOutput(_ bound: Int) {
        guard output.count < bound else { return }
        output.deallocate()
        output = UnsafeMutableRawBufferPointer.allocate(byteCount: bound, alignment: 16)
    }
}
