import CSHA256
import ChunkStore
import Crypto
import Foundation
import Testing

/// Blob ids computed by our SHA-256 (`BlobHash`, on CSHA256) against swift-crypto's (BoringSSL).
@Suite("Blob ids: SHA-256 and HMAC-SHA-256, one or two at a time")
struct BlobHashTests {
    /// Lengths around every padding boundary (55/56 bytes left in the last block, whole blocks), and
    /// chunk-sized ones.
    static let lengths = [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, 65_599, 262_144, 1_048_583]

    func reference(_ bytes: [UInt8], key: SymmetricKey?) -> ChunkID {
        if let key { return HMAC<SHA256>.authenticationCode(for: bytes, using: key).withUnsafeBytes { ChunkID(bytes: $0) } }
        return SHA256.hash(data: bytes).withUnsafeBytes { ChunkID(bytes: $0) }
    }

    @Test("one message: SHA-256 and HMAC equal swift-crypto's at every padding boundary, on the fast and the portable path")
    func single() {
        let key = SymmetricKey(data: randomBytes(32, seed: 901))
        let keyed = key.withUnsafeBytes { BlobHash(hmacKey: Array($0)) }
        for length in Self.lengths {
            let bytes = randomBytes(length, seed: UInt64(length) << 8 | 7)
            bytes.withUnsafeBytes { raw in
                #expect(BlobHash.sha256.id(raw) == reference(bytes, key: nil), "SHA-256 of \(length) bytes")
                #expect(keyed.id(raw) == reference(bytes, key: key), "HMAC of \(length) bytes")
                #expect(ChunkID(hashing: raw) == reference(bytes, key: nil))
                var start = sm_sha256_start()
                let portable = [UInt8](unsafeUninitializedCapacity: 32) { out, count in
                    sm_sha256_portable(&start, raw.baseAddress, raw.count, out.baseAddress!)
                    count = 32
                }
                #expect(portable.withUnsafeBytes { ChunkID(bytes: $0) } == reference(bytes, key: nil), "portable SHA-256 of \(length) bytes")
            }
        }
    }

    @Test("many messages at once — none, one, two of every pair of lengths, all of them in both orders, 64 and more — give each its own digest")
    func many() {
        let key = SymmetricKey(data: randomBytes(32, seed: 902))
        let keyed = key.withUnsafeBytes { BlobHash(hmacKey: Array($0)) }
        let messages = Self.lengths.map { randomBytes($0, seed: UInt64($0) << 8 | 9) }
        func check(_ batch: [[UInt8]], _ what: String) {
            // One buffer, the messages side by side: most start at an unaligned address.
            batch.flatMap { $0 }.withUnsafeBytes { all in
                var offset = 0
                let buffers = batch.map { message in
                    defer { offset += message.count }
                    return UnsafeRawBufferPointer(rebasing: all[offset..<(offset + message.count)])
                }
                #expect(BlobHash.sha256.ids(buffers) == batch.map { reference($0, key: nil) }, "SHA-256 of \(what)")
                #expect(keyed.ids(buffers) == batch.map { reference($0, key: key) }, "HMAC of \(what)")
            }
        }
        check([], "no message")
        check([messages[5]], "one message")
        for a in messages {
            for b in messages { check([a, b], "\(a.count) and \(b.count) bytes") }
        }
        check(messages, "all lengths, shortest first")
        check(messages.reversed(), "all lengths, longest first")
        check(messages + messages.reversed() + messages, "\(3 * messages.count) messages")
        // Up to 64 are taken longest first, more in order: both sides of the line.
        let many = messages + messages.reversed() + messages + messages.reversed()
        check(Array(many.prefix(64)), "64 messages")
        check(many, "\(many.count) messages")
        // The same bytes twice (a chunk repeated in a batch).
        check([messages.last!, messages.last!], "one message twice")
    }

    @Test("the machines this project runs on have SHA-NI, so the tests above ran the two-lane path")
    func accelerated() {
        #if arch(x86_64)
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        #expect((sm_sha256_accelerated() == 1) == cpu.contains(" sha_ni"), "cpuid and /proc/cpuinfo disagree about SHA-NI")
        #endif
    }
}
