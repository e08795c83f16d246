import ChunkStore
import Foundation

/// A run of chunks of a large file, in one of its read buffers, for any worker to hash and store.
struct ChunkBatch: @unchecked Sendable {
    let job: LargeFile
    let buffer: UnsafeMutableRawBufferPointer
    let chunks: [(offset: Int, length: Int)]
    let firstIndex: Int

    fileprivate func process(with saver: ChunkSaver) throws {
        let ids = try saver.saveData(chunks.map { UnsafeRawBufferPointer(rebasing: buffer[$0.offset..<($0.offset + $0.length)]) })
        try job.set(firstIndex, ids, saver: saver)
    }
}

/// One large file in flight: a few read buffers (reused, counted: the reader holds one until the next
/// has copied its tail; a batch holds one until hashed), the chunk ids as they arrive, and the first
/// error any worker hit.
///
/// Chunk ids are kept in slots of `ContentList.idsPerBlob`; a slot is stored as a content list as soon
/// as all its ids have arrived, so memory does not grow with the file (a 1 TiB image in 64 KiB chunks
/// would otherwise hold 512 MiB of ids). The lists are cut exactly where `attach` would cut them.
final class LargeFile: @unchecked Sendable {  // guarded by `condition`
    private let condition = NSCondition()
    private var free: [UnsafeMutableRawBufferPointer] = []
    private var all: [UnsafeMutableRawBufferPointer] = []
    private var users: [UnsafeMutableRawPointer: Int] = [:]
    private var slots: [Int: (ids: [ChunkID], filled: Int)] = [:]
    private var lists: [Int: ChunkID] = [:]
    private var total = 0
    private static let per = ContentList.idsPerBlob
    private static let placeholder = ChunkID(hashing: [UInt8]())
    private var outstanding = 0
    private var error: Error?
    let limit: Int
    let bufferBytes: Int
    let lanes: BackupLanes

    init(lanes: BackupLanes, bufferBytes: Int) {
        limit = lanes.workers + 1
        self.lanes = lanes
        self.bufferBytes = bufferBytes
    }

    deinit { lanes.giveBack(all) }

    /// A free buffer (held once, by the reader); while none is free, this thread hashes waiting batches.
    func takeBuffer(helping lanes: BackupLanes, saver: ChunkSaver) throws -> UnsafeMutableRawBufferPointer {
        while true {
            condition.lock()
            if let e = error {
                condition.unlock()
                throw e
            }
            var buffer = free.popLast()
            if buffer == nil && all.count < limit, let fresh = lanes.takeBuffer(bytes: bufferBytes) {
                buffer = fresh
                all.append(fresh)
            }
            if let buffer {
                users[buffer.baseAddress!] = 1
                condition.unlock()
                return buffer
            }
            condition.unlock()
            if let batch = lanes.lanes.popBatch(timeout: .milliseconds(2)) { try batch.job.run(batch, saver) }
        }
    }

    /// Adds a batch's claim on its buffer and room for its ids. - Returns: the index of its first chunk.
    func reserve(_ count: Int, in buffer: UnsafeMutableRawBufferPointer) -> Int {
        condition.withLock {
            users[buffer.baseAddress!, default: 0] += 1
            let first = total
            total += count
            var slot = first / Self.per
            while slot * Self.per < total {
                if slots[slot] == nil && lists[slot] == nil { slots[slot] = (Array(repeating: Self.placeholder, count: Self.per), 0) }
                slot += 1
            }
            outstanding += 1
            return first
        }
    }

    /// Hashes and stores a batch, then lets go of its buffer (also on failure).
    func run(_ batch: ChunkBatch, _ saver: ChunkSaver) throws {
        do {
            try batch.process(with: saver)
            release(batch.buffer, batch: true)
        } catch {
            fail(error)
            release(batch.buffer, batch: true)
            throw error
        }
    }

    func release(_ b: UnsafeMutableRawBufferPointer, batch: Bool) {
        condition.lock()
        let left = (users[b.baseAddress!] ?? 1) - 1
        users[b.baseAddress!] = left
        if left == 0 { free.append(b) }
        if batch { outstanding -= 1 }
        condition.broadcast()
        condition.unlock()
    }

    /// Records a batch's ids; stores every slot they complete as a content list.
    func set(_ first: Int, _ batchIDs: [ChunkID], saver: ChunkSaver) throws {
        var complete: [(slot: Int, ids: [ChunkID])] = []
        condition.withLock {
            var i = first
            while i < first + batchIDs.count {
                let slot = i / Self.per
                let end = min(first + batchIDs.count, (slot + 1) * Self.per)
                var entry = slots.removeValue(forKey: slot)!  // taken out and put back: no copy
                for j in i..<end { entry.ids[j - slot * Self.per] = batchIDs[j - first] }
                entry.filled += end - i
                if entry.filled == Self.per { complete.append((slot, entry.ids)) } else { slots[slot] = entry }
                i = end
            }
        }
        for c in complete {
            let id = try saver.saveList(c.ids[...])
            condition.withLock { lists[c.slot] = id }
        }
    }

    func fail(_ e: Error) { condition.withLock { if error == nil { error = e } } }

    /// Waits for every batch, hashing waiting batches meanwhile.
    func waitForBatches(helping lanes: BackupLanes, saver: ChunkSaver) throws {
        while true {
            condition.lock()
            if outstanding == 0 {
                let e = error
                condition.unlock()
                if let e { throw e }
                return
            }
            condition.unlock()
            if let batch = lanes.lanes.popBatch(timeout: .milliseconds(2)) { try? batch.job.run(batch, saver) }
        }
    }

    /// On failure, waits until no worker still uses the buffers (they go back to the pool with this
    /// object). Meanwhile it hashes waiting batches (of any file): the other workers may have finished
    /// already, and a batch nobody takes would keep this wait from ending.
    func abandon(_ lanes: BackupLanes, saver: ChunkSaver) {
        while condition.withLock({ outstanding > 0 }) {
            if let batch = lanes.lanes.popBatch(timeout: .milliseconds(2)) { try? batch.job.run(batch, saver) }
        }
    }

    /// The file's content once every batch is done: its ids inline when few, else its content lists
    /// (the last, partial one stored now).
    func content(saver: ChunkSaver) throws -> SavedContent {
        condition.lock()
        let rest = slots, count = total
        var lists = self.lists
        condition.unlock()
        if count <= ContentList.inlineLimit {
            guard let first = rest[0] else { return .chunks([]) }
            return .chunks(Array(first.ids[..<count]))
        }
        for (slot, entry) in rest {
            let end = min(Self.per, count - slot * Self.per)
            lists[slot] = try saver.saveList(entry.ids[..<end])
        }
        return .lists((0..<lists.count).map { lists[$0]! })
    }
}
