import CSHA256

/// How blob ids are computed: SHA-256 of a blob's raw bytes, or in an encrypted store HMAC-SHA-256
/// (RFC 2104) under the store's blob-id key. Both run on CSHA256, which hashes two blobs at once
/// about 1.5× as fast as one after the other where the CPU has SHA-NI: backup, restore and check
/// hand it every chunk they have at hand at once (`ids`).
public struct BlobHash: Sendable {
    /// Where every hash starts: SHA-256's initial state, or (HMAC) the key's inner pad absorbed.
    private let inner: SMSHA256Start
    /// HMAC: the key's outer pad absorbed. Nil for plain SHA-256.
    private let outer: SMSHA256Start?

    /// Plain SHA-256 (stores without encryption, and every other use of ChunkID's hash).
    public static let sha256 = BlobHash(inner: sm_sha256_start(), outer: nil)

    private init(inner: SMSHA256Start, outer: SMSHA256Start?) {
        self.inner = inner
        self.outer = outer
    }

    /// HMAC-SHA-256 under `key` (at most one 64-byte block: blob-id keys are 32 bytes).
    public init(hmacKey key: [UInt8]) {
        precondition(key.count <= 64, "an HMAC key longer than a block is hashed first; blob-id keys are 32 bytes")
        func padded(_ pad: UInt8) -> SMSHA256Start {
            var block = [UInt8](repeating: pad, count: 64)
            for (i, byte) in key.enumerated() { block[i] ^= byte }
            return sm_sha256_absorb(sm_sha256_start(), block)
        }
        self.init(inner: padded(0x36), outer: padded(0x5c))
    }

    /// The id of `bytes`.
    public func id(_ bytes: UnsafeRawBufferPointer) -> ChunkID {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { digest in
            var start = inner
            sm_sha256(&start, bytes.baseAddress, bytes.count, digest.baseAddress!)
            return finish(digest)
        }
    }

    /// The ids of `messages`, in order, hashed two at a time (as `id` gives them).
    public func ids(_ messages: [UnsafeRawBufferPointer]) -> [ChunkID] {
        guard messages.count > 1 else { return messages.map(id) }
        let digests = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 32 * messages.count)
        defer { digests.deallocate() }
        var start = inner
        sm_sha256_many(&start, messages.count, messages.map { $0.baseAddress }, messages.map(\.count), digests.baseAddress!)
        return (0..<messages.count).map { finish(UnsafeMutableBufferPointer(rebasing: digests[(32 * $0)..<(32 * $0 + 32)])) }
    }

    /// The id from the (inner) digest in `digest`: itself, or HMAC's outer hash of it.
    private func finish(_ digest: UnsafeMutableBufferPointer<UInt8>) -> ChunkID {
        if var outer {
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { inner in
                _ = inner.initialize(fromContentsOf: digest)
                sm_sha256(&outer, inner.baseAddress, 32, digest.baseAddress!)
            }
        }
        return ChunkID(bytes: UnsafeRawBufferPointer(digest))
    }
}
