import ChunkStore
import Foundation

/// The chunks a restore writes more than once (files that share content, repeated blocks within a
/// file), kept decompressed and verified between their uses so each is read, decompressed and
/// verified once, the way restic's restorer writes each blob it fetches to every place that needs it.
///
/// Unlike `ChunkCache` (which serves readers that cannot know what they will read next), a restore
/// knows every use before it starts: the plan counts them, and a chunk is dropped with its last use.
/// At most `capacity` bytes are held; a chunk that finds no room is read again at each use, as it
/// would be without this. Safe to use from every worker at once.
final class SharedChunks: @unchecked Sendable {  // state guarded by `lock`
    private let lock = NSLock()
    /// Uses still to come, for the chunks used more than once.
    private var remaining: [ChunkID: Int]
    private var held: [ChunkID: [UInt8]] = [:]
    private var heldBytes = 0
    private let capacity: Int
    private var copiedBytes: UInt64 = 0

    /// Counts the uses of every chunk in `contents` (one list per file to be written).
    init<S: Sequence>(contents: S, capacity: Int) where S.Element == [ChunkID] {
        var uses: [ChunkID: Int] = [:]
        for content in contents {
            for id in content { uses[id, default: 0] += 1 }
        }
        remaining = uses.filter { $0.value > 1 }
        self.capacity = capacity
    }

    /// Bytes written from held copies instead of read from the store.
    var reusedBytes: UInt64 { lock.withLock { copiedBytes } }

    /// Copies chunk `id` into `destination` (its exact length) when it is held, counting the use.
    /// - Returns: false when it is not held: the caller reads it, then calls `keep`.
    func copy(_ id: ChunkID, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        let bytes: [UInt8]? = lock.withLock {
            guard let bytes = held[id], bytes.count == destination.count else { return nil }
            useOne(id)
            copiedBytes += UInt64(bytes.count)
            return bytes
        }
        guard let bytes else { return false }
        bytes.withUnsafeBytes { destination.copyMemory(from: $0) }  // outside the lock: the array is immutable
        return true
    }

    /// Counts a use of chunk `id`, just read and verified into `bytes`, and keeps a copy when it is
    /// used again later and there is room.
    func keep(_ id: ChunkID, _ bytes: UnsafeRawBufferPointer) {
        lock.withLock {
            guard let left = remaining[id] else { return }
            useOne(id)
            guard left > 1, held[id] == nil, heldBytes + bytes.count <= capacity else { return }
            held[id] = Array(bytes)
            heldBytes += bytes.count
        }
    }

    /// One use of `id` done; its last use drops it. Called with `lock` held.
    private func useOne(_ id: ChunkID) {
        guard let left = remaining[id] else { return }
        if left > 1 {
            remaining[id] = left - 1
            return
        }
        remaining[id] = nil
        if let bytes = held.removeValue(forKey: id) { heldBytes -= bytes.count }
    }
}
