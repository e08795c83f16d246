import Compression
import Foundation

/// A pack being filled: blobs are compressed straight into its tail, so a chunk's bytes are copied
/// only by the read and the compressor (and, in an encrypted store, sealed in place under the pack's
/// key — the pack's id is chosen when the buffer is started). Owned by one worker between `checkout`
/// and `checkin`.
public final class PackBuffer: @unchecked Sendable {  // owned by one thread at a time
    let storage: UnsafeMutableRawBufferPointer
    /// Bytes used.
    public private(set) var count = 0
    var entries: [BlobEntry] = []
    let cipher: StoreCipher
    /// The pack's id (random), and in an encrypted store its keys.
    private(set) var pack = ChunkID.random()
    private var keys: StoreCipher.PackKeys?

    /// Mapped directly (not malloc'd): its pages can be handed back with MADV_DONTNEED without touching
    /// any allocator's bookkeeping, and it is page-aligned for O_DIRECT.
    init(capacity: Int, cipher: StoreCipher) throws {
        let length = (capacity + FileIO.directAlignment - 1) & ~(FileIO.directAlignment - 1)
        let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let base, base != MAP_FAILED else {
            throw StoreError.io(path: "a \(length)-byte pack buffer", operation: "map memory for", errno: errno)
        }
        storage = UnsafeMutableRawBufferPointer(start: base, count: length)
        self.cipher = cipher
        keys = cipher.packKeys(pack)
    }

    deinit { munmap(storage.baseAddress, storage.count) }

    /// Free bytes at the tail.
    public var freeCount: Int { storage.count - count }

    /// Room a blob of `storedLength` bytes (as compressed) takes: in an encrypted store, its tag too.
    public func room(for storedLength: Int) -> Int { storedLength + cipher.blobOverhead }

    /// Appends a blob: `write` puts its stored bytes (as compressed) at the start of the free space it is
    /// lent — valid during the call only — and says with which codec and how many; in an encrypted store
    /// they are then sealed in place (the free space must have room for the tag: `room(for:)`).
    /// - Returns: the bytes the blob takes in the pack.
    @discardableResult
    public func append(
        id: ChunkID, type: BlobType, rawLength: Int, _ write: (_ free: UnsafeMutableRawBufferPointer) throws -> (kind: Codec.Kind, count: Int)
    ) rethrows -> Int {
        let free = UnsafeMutableRawBufferPointer(rebasing: storage[count...])
        let (codec, storedLength) = try write(free)
        precondition(room(for: storedLength) <= free.count)
        var entry = BlobEntry(id: id, type: type, codec: codec, offset: UInt32(count), storedLength: 0, rawLength: UInt32(rawLength))
        let sealed = cipher.sealBlob(free, length: storedLength, keys: keys, entry: entry)
        entry.storedLength = UInt32(sealed)
        entries.append(entry)
        count += sealed
        return sealed
    }

    /// Copies `source`'s blobs into this (empty) buffer in a random order, and takes its pack id: the
    /// order of blobs in an encrypted pack says nothing of the order of a file's chunks.
    func fillShuffled(from source: PackBuffer) {
        precondition(count == 0 && storage.count >= source.count)
        pack = source.pack
        keys = source.keys
        for e in source.entries.shuffled() {
            let n = Int(e.storedLength)
            UnsafeMutableRawBufferPointer(rebasing: storage[count..<(count + n)]).copyMemory(
                from: UnsafeRawBufferPointer(rebasing: source.storage[Int(e.offset)..<(Int(e.offset) + n)]))
            var moved = e
            moved.offset = UInt32(count)
            entries.append(moved)
            count += n
        }
    }

    /// Empties the buffer without giving its pages back (a writer's shuffle buffer, reused at once).
    func clear() {
        count = 0
        entries.removeAll(keepingCapacity: true)
    }

    var isFull: Bool { count >= PackFormat.targetSize }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[..<count]) }

    /// Empties the buffer and gives its pages back to the kernel: a spare costs no memory until it
    /// is filled again (refaulting 16 MiB costs about a millisecond).
    func reset() {
        madvise(storage.baseAddress!, storage.count, MADV_DONTNEED)
        count = 0
        entries.removeAll(keepingCapacity: true)
        pack = ChunkID.random()
        keys = cipher.packKeys(pack)
    }
}

/// Collects blobs into packs of about `PackFormat.targetSize` bytes and writes full packs on a thread
/// of its own, so no worker waits for a write or an fsync. One `PackWriter` serves one backup.
///
/// Workers `checkout` a partly filled buffer, add blobs, and `checkin` it; a full buffer goes to the
/// writer thread, and at most `inFlight` full buffers are queued or being written (memory stays
/// bounded: at most workers + `inFlight` buffers of 16 MiB hold data).
///
/// Ordering makes a crash harmless: packs are written first, then (by `commit`) the index segment that
/// lists them, and only then does the caller write the snapshot record.
public final class PackWriter: @unchecked Sendable {  // shared state guarded by `condition`
    let store: Store
    /// Room for the target size plus the largest blob's worst-case compressed size.
    let capacity: Int
    private let condition = NSCondition()
    private var partial: [PackBuffer] = []
    private var spare: [PackBuffer] = []
    private var full: [PackBuffer] = []
    /// Packs being written right now.
    private var writing = 0
    private var closed = false
    private var failure: Error?
    /// Packs this writer wrote that no index segment lists yet: nothing can refer to them but this
    /// writer, so a failed backup removes them (a full disk does not stay full).
    private var unindexed = Set<ChunkID>()
    /// Packs this writer has written.
    public private(set) var packsWritten = 0
    /// Full packs queued or being written at once.
    private let inFlight: Int
    /// New blobs held in memory before they are written as an index segment.
    private let segmentFlushThreshold: Int

    /// Packs written at once. A local disk takes one pack at a time at full speed; an object store
    /// answers each upload after a round trip, so a remote store keeps three uploads going.
    static func writerCount(remote: Bool, lean: Bool) -> Int { remote && !lean ? 3 : 1 }

    init(store: Store, lean: Bool) {
        self.store = store
        let writers = Self.writerCount(remote: store.isRemote, lean: lean)
        inFlight = lean ? 1 : writers + 1
        segmentFlushThreshold = lean ? 1 << 14 : 1 << 16
        capacity = PackFormat.targetSize + Compressor.bound(store.config.chunker.maxSize) + store.cipher.blobOverhead + (64 << 10)
        // The threads hold the writer until `commit` or `cancel` closes it (then their loops return).
        for n in 0..<writers {
            let t = Thread { self.writerLoop() }
            t.name = "pack-writer-\(n)"
            t.start()
        }
    }

    /// A buffer with room for at least `room` more bytes.
    public func checkout(room: Int = 0) throws -> PackBuffer {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw failure }
        if let i = partial.firstIndex(where: { $0.freeCount >= room }) { return partial.remove(at: i) }
        if room > capacity { return try PackBuffer(capacity: room + (64 << 10), cipher: store.cipher) }  // a blob larger than a pack (a huge tree)
        return try spare.popLast() ?? PackBuffer(capacity: capacity, cipher: store.cipher)
    }

    /// Returns a buffer; a full one is queued for writing (waiting while `inFlight` are queued or
    /// being written).
    public func checkin(_ buffer: PackBuffer) throws {
        condition.lock()
        defer { condition.unlock() }
        if buffer.isFull {
            while full.count + writing >= inFlight && failure == nil { condition.wait() }
            full.append(buffer)
            condition.broadcast()
        } else {
            partial.append(buffer)
        }
        if let failure { throw failure }
    }

    /// Writes the partly filled packs, waits for every write, and writes an index segment listing every
    /// blob this writer added. - Returns: the segment's name, or nil when nothing was added.
    @discardableResult
    public func commit() throws -> String? {
        condition.lock()
        for b in partial where b.count > 0 { full.append(b) }
        partial.removeAll()
        closed = true
        condition.broadcast()
        while (!full.isEmpty || writing > 0) && failure == nil { condition.wait() }
        let error = failure
        condition.unlock()
        if let error { throw error }
        return try writeSegment()
    }

    /// Writes the pending blobs as an index segment; the packs they are in are then indexed.
    private func writeSegment() throws -> String? {
        let covered = condition.withLock { unindexed }  // recorded in the index before they were added here
        let name = try store.writeIndexSegment()
        condition.withLock { unindexed.subtract(covered) }
        return name
    }

    /// Stops the writer threads without writing an index (a failed backup), waits for the writes in
    /// progress, and removes the packs no index segment lists yet. Packs in segments already written stay
    /// (another backup may have deduplicated against them) until prune. After `commit`, does nothing.
    /// - Returns: the number of packs removed.
    @discardableResult
    public func cancel() -> Int {
        condition.lock()
        full.removeAll()
        partial.removeAll()
        closed = true
        condition.broadcast()
        while writing > 0 { condition.wait() }
        let leftovers = unindexed
        unindexed.removeAll()
        condition.unlock()
        var removed = 0
        for pack in leftovers where (try? store.deletePack(pack)) != nil { removed += 1 }
        return removed
    }

    private func writerLoop() {
        var shuffle: PackBuffer?  // this thread's, for encrypted stores
        while true {
            condition.lock()
            while full.isEmpty && !closed { condition.wait() }
            if full.isEmpty && closed {
                condition.unlock()
                return
            }
            let buffer = full.removeFirst()
            writing += 1
            condition.broadcast()
            condition.unlock()
            do {
                try write(buffer, shuffle: &shuffle)
                condition.lock()
                buffer.reset()
                if buffer.freeCount == capacity { spare.append(buffer) }
                packsWritten += 1
            } catch {
                condition.lock()
                failure = failure ?? error
            }
            writing -= 1
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Writes one pack; an encrypted store's blobs go out in a random order, through `shuffle`.
    private func write(_ filled: PackBuffer, shuffle: inout PackBuffer?) throws {
        CrashPoint.step()
        var buffer = filled
        if store.cipher.isEncrypted && filled.entries.count > 1 {
            if shuffle == nil || shuffle!.storage.count < filled.count {
                shuffle = try PackBuffer(capacity: max(capacity, filled.count), cipher: store.cipher)
            }
            shuffle!.clear()
            shuffle!.fillShuffled(from: filled)
            buffer = shuffle!
        }
        let id = buffer.pack
        let trailer = PackFormat.encodeTrailer(buffer.entries, pack: id, cipher: store.cipher)
        try trailer.withUnsafeBytes { t in
            try store.backend.put(ObjectKey.pack(id), parts: [buffer.bytes, t], bulk: true)
        }
        condition.withLock {
            store.index.record(buffer.entries, pack: id)
            unindexed.insert(id)
        }
        // Keep the in-memory part of the index small: past this many new blobs, write them as a
        // segment now (valid even if the backup fails later: the packs it lists exist).
        if store.index.pendingCount >= segmentFlushThreshold { _ = try writeSegment() }
    }
}
