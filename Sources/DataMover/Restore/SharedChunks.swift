import ChunkStore
import Foundation

/// A restored file whose chunks other places in the restore can be read back from: its descriptor
/// stays open as long as the object lives.
protocol ChunkSource: AnyObject, Sendable {
    /// The descriptor the file's contents were written through (open for reading too).
    var fd: Int32 { get }
}

/// The chunks a restore writes more than once (files that share content, repeated blocks within a
/// file): each is read, decompressed and verified once, the way restic's restorer writes each blob it
/// fetches to every place that needs it.
///
/// Unlike `ChunkCache` (which serves readers that cannot know what they will read next), a restore
/// knows every use before it starts: the plan counts them, and a chunk is forgotten with its last
/// use. Until then a later use copies it from one of two places: a decompressed copy held in memory
/// while its first place is still on its way to the disk (at most `capacity` bytes, beyond which a
/// copy is held only for a worker already waiting for it), or — once it is on the target's
/// filesystem — the restored file itself, read back through its descriptor (at most
/// `maximumSources` files kept open for this). Bytes read back were verified when they were written
/// there. A worker that wants a chunk another is reading at that moment waits for it instead of
/// reading it too — unless it holds claims of its own (`claimNow`: a worker reading several chunks
/// side by side takes the ones after the first only if nobody else has them). A use that finds none
/// of these reads the chunk from the store again. Safe to use from every worker at once.
final class SharedChunks: @unchecked Sendable {  // state guarded by `condition`
    /// Restored files held open at most for reading chunks back. Each holds two descriptors (the
    /// file's and, through `RestoringFile`, its directory's): 256 of the usual limit of 1,024.
    static let maximumSources = 128

    private let condition = NSCondition()
    /// Uses still to come, for the chunks used more than once.
    private var remaining: [ChunkID: Int]
    private var held: [ChunkID: [UInt8]] = [:]
    private var heldBytes = 0
    private let capacity: Int
    /// Where chunks were first written, for reading them back.
    private var written: [ChunkID: (source: ChunkSource, offset: Int)] = [:]
    /// Chunks in `written` per source (a source is released with its last).
    private var sourceUses: [ObjectIdentifier: Int] = [:]
    /// Chunks a worker is reading from the store now, and how many others wait for each.
    private var reading: Set<ChunkID> = []
    private var waiting: [ChunkID: Int] = [:]
    private var copiedBytes: UInt64 = 0

    /// Counts the uses of every chunk in `contents` (one list per file to be written); holds at most
    /// `capacity` bytes of decompressed chunks.
    init<S: Sequence>(contents: S, capacity: Int) where S.Element == [ChunkID] {
        var uses: [ChunkID: Int] = [:]
        for content in contents {
            for id in content { uses[id, default: 0] += 1 }
        }
        remaining = uses.filter { $0.value > 1 }
        self.capacity = capacity
    }

    /// Bytes written from a chunk already read for another place (held or read back).
    var reusedBytes: UInt64 { condition.withLock { copiedBytes } }

    /// Claims chunk `id` for the caller to read from the store now, without waiting: true for a
    /// chunk not written more than once from here on (nobody else wants it), or for one nobody is
    /// reading and no copy of which is on hand; false when `copy` would copy it or wait for it. A true
    /// is followed by `keep` or `abandon` (no-ops for a chunk used once).
    func claimNow(_ id: ChunkID) -> Bool {
        condition.withLock {
            guard remaining[id] != nil else { return true }
            guard held[id] == nil, written[id] == nil, !reading.contains(id) else { return false }
            reading.insert(id)
            return true
        }
    }

    /// Copies chunk `id` into `destination` (its exact length) from a held copy or the file it was
    /// written to, counting the use; waits while another worker is reading it. - Returns: false
    /// when it is in none of these: the caller reads it from the store, then calls `keep` (or
    /// `abandon`, if that failed).
    func copy(_ id: ChunkID, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        enum Found {
            case bytes([UInt8])
            case file(ChunkSource, Int)
        }
        let found: Found? = condition.withLock {
            while true {
                if let bytes = held[id], bytes.count == destination.count {
                    useOne(id)
                    copiedBytes += UInt64(bytes.count)
                    if heldBytes > capacity, held.removeValue(forKey: id) != nil {  // it was held for a waiter only
                        heldBytes -= bytes.count
                    }
                    return .bytes(bytes)
                }
                if let place = written[id] { return .file(place.source, place.offset) }
                guard remaining[id] != nil else { return nil }
                guard reading.contains(id) else {
                    reading.insert(id)  // this worker reads it
                    return nil
                }
                waiting[id, default: 0] += 1
                condition.wait()
                waiting[id] = waiting[id] == 1 ? nil : waiting[id]! - 1
            }
        }
        switch found {
        case nil:
            return false
        case .bytes(let bytes):
            bytes.withUnsafeBytes { destination.copyMemory(from: $0) }  // outside the lock: the array is immutable
            return true
        case .file(let source, let offset):
            // `source` is held here, so its descriptor stays open even if the chunk's last other use
            // releases it meanwhile.
            let got = try? FileIO.preadFully(fd: source.fd, into: destination, at: offset, path: "a restored file")
            guard got == destination.count else { return false }
            condition.withLock {
                useOne(id)
                copiedBytes += UInt64(destination.count)
            }
            return true
        }
    }

    /// Counts a use of chunk `id`, just read and verified into `bytes`, and keeps a copy when it is
    /// used again later and there is room (or a worker waits for it). - Returns: whether it is used
    /// again later (the caller then tells `wrote` where this use went).
    @discardableResult
    func keep(_ id: ChunkID, _ bytes: UnsafeRawBufferPointer) -> Bool {
        condition.withLock {
            defer { finishReading(id) }
            guard let left = remaining[id] else { return false }
            useOne(id)
            guard left > 1 else { return false }
            if held[id] == nil, written[id] == nil, heldBytes + bytes.count <= capacity || waiting[id] != nil {
                held[id] = Array(bytes)
                heldBytes += bytes.count
            }
            return true
        }
    }

    /// Reading chunk `id` from the store failed: a worker waiting for it reads it itself.
    func abandon(_ id: ChunkID) {
        condition.withLock { finishReading(id) }
    }

    /// Workers waiting for a chunk another is reading.
    var waitingWorkers: Int { condition.withLock { waiting.values.reduce(0, +) } }

    /// The chunks `firsts` (id, file offset) are now on the filesystem in `source`: later uses read
    /// them back from there, and their held copies are dropped.
    func wrote(_ firsts: [(id: ChunkID, offset: Int)], in source: ChunkSource) {
        guard !firsts.isEmpty else { return }
        let key = ObjectIdentifier(source)
        condition.withLock {
            for (id, offset) in firsts where remaining[id] != nil && written[id] == nil {
                guard sourceUses[key] != nil || sourceUses.count < Self.maximumSources else { return }
                written[id] = (source, offset)
                sourceUses[key, default: 0] += 1
                if let bytes = held.removeValue(forKey: id) { heldBytes -= bytes.count }
            }
        }
    }

    /// Called with the lock held.
    private func finishReading(_ id: ChunkID) {
        guard reading.remove(id) != nil else { return }
        if waiting[id] != nil { condition.broadcast() }
    }

    /// One use of `id` done; its last use forgets it. Called with the lock held.
    private func useOne(_ id: ChunkID) {
        guard let left = remaining[id] else { return }
        if left > 1 {
            remaining[id] = left - 1
            return
        }
        remaining[id] = nil
        if let bytes = held.removeValue(forKey: id) { heldBytes -= bytes.count }
        if let place = written.removeValue(forKey: id) {
            let key = ObjectIdentifier(place.source)
            let left = (sourceUses[key] ?? 1) - 1
            sourceUses[key] = left > 0 ? left : nil
        }
    }
}
