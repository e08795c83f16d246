/// The set of blob ids prune keeps, in as little memory as works: an open-addressing hash set sized
/// once, for every id the index holds (live ids are a subset), at 80 % load — 40 bytes per indexed
/// blob, never rehashed — which, when marking is done, is compacted and sorted in place into a sorted
/// array for merging against the sorted index segments.
final class LiveSet {
    private let slots: UnsafeMutableBufferPointer<ChunkID>
    /// At most this many distinct ids fit: one more means a referenced id the index does not have.
    let limit: Int
    private(set) var count = 0
    private(set) var isSorted = false
    /// The all-zero id marks an empty slot; it is kept aside should a blob ever have it.
    private var hasZero = false
    private static let empty = ChunkID(w0: 0, w1: 0, w2: 0, w3: 0)

    init(limit: Int) {
        self.limit = limit
        slots = .allocate(capacity: max(16, limit + limit / 4 + 1))
        slots.initialize(repeating: Self.empty)
    }

    deinit { slots.deallocate() }

    /// Adds `id`. - Returns: whether it was new, or nil when the set already holds `limit` ids.
    func insert(_ id: ChunkID) -> Bool? {
        precondition(!isSorted, "insert after sort")
        if id == Self.empty {
            if hasZero { return false }
            guard count < limit else { return nil }
            hasZero = true
            count += 1
            return true
        }
        // SHA-256 output is uniform: a word of it, scaled to the table size, is the hash.
        var i = Int(id.w1.multipliedFullWidth(by: UInt64(slots.count)).high)
        while true {
            let slot = slots[i]
            if slot == id { return false }
            if slot == Self.empty { break }
            i += 1
            if i == slots.count { i = 0 }
        }
        guard count < limit else { return nil }
        slots[i] = id
        count += 1
        return true
    }

    /// Compacts the ids to the front and sorts them; afterwards the set answers `index(of:)`.
    func sort() {
        guard !isSorted else { return }
        var n = 0
        for i in 0..<slots.count where slots[i] != Self.empty {
            slots[n] = slots[i]
            n += 1
        }
        var front = UnsafeMutableBufferPointer(rebasing: slots[0..<n])
        front.sort()
        if hasZero {  // it sorts first (the table always has a spare slot)
            var i = n
            while i > 0 {
                slots[i] = slots[i - 1]
                i -= 1
            }
            slots[0] = Self.empty
            n += 1
        }
        for i in n..<slots.count { slots[i] = Self.empty }
        isSorted = true
    }

    /// The id at sorted position `i`.
    subscript(i: Int) -> ChunkID {
        precondition(isSorted && i < count)
        return slots[i]
    }

    /// The sorted position of `id`, or nil when it is not live.
    func index(of id: ChunkID) -> Int? {
        precondition(isSorted)
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            let candidate = slots[mid]
            if candidate == id { return mid }
            if candidate < id { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }

    /// A membership test for ids asked in ascending order: one forward pass, no search.
    func ascendingFilter() -> (ChunkID) -> Bool {
        precondition(isSorted)
        var next = 0
        return { [self] id in
            while next < count && self[next] < id { next += 1 }
            return next < count && self[next] == id
        }
    }
}
