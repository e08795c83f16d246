/// The set of blobs prune keeps, in as little memory as works: an open-addressing hash set sized once,
/// for every id the index holds (live ids are a subset), at most 80 % full, never rehashed, which,
/// when marking is done, becomes a sorted array in place, for merging against the sorted index
/// segments.
///
/// It holds the first 128 bits of each id: 20 bytes per indexed blob. Two blobs sharing them (about
/// 10⁻²¹ for a billion blobs) are not told apart here; prune's merge pass sees them side by side in
/// the index and refuses to go on, so a collision can never cost data.
///
/// An id's home slot is its first word scaled to the table (ids are SHA-256 output: uniform), so the
/// table is already in order but for the short runs linear probing displaces: compacting it and an
/// insertion sort finish the job in about linear time with no extra memory.
final class LiveSet {
    struct Key: Comparable, Equatable {
        var hi: UInt64, lo: UInt64
        init(_ id: ChunkID) {
            hi = id.w0
            lo = id.w1
        }
        static func < (a: Key, b: Key) -> Bool { (a.hi, a.lo) < (b.hi, b.lo) }
        var hex: String { String(ChunkID(w0: hi, w1: lo, w2: 0, w3: 0).hex.prefix(32)) + "…" }
    }

    private let slots: UnsafeMutableBufferPointer<Key>
    /// At most this many distinct ids fit: one more means a referenced id the index does not have.
    let limit: Int
    private(set) var count = 0
    private(set) var isSorted = false
    /// The all-zero key marks an empty slot; it is kept aside should a blob ever have it.
    private var hasZero = false
    private static let empty = Key(ChunkID(w0: 0, w1: 0, w2: 0, w3: 0))

    init(limit: Int) {
        self.limit = limit
        slots = .allocate(capacity: max(16, limit + limit / 4 + 1))
        slots.initialize(repeating: Self.empty)
    }

    deinit { slots.deallocate() }

    /// Adds `id`. - Returns: whether it was new, or nil when the set already holds `limit` ids.
    func insert(_ id: ChunkID) -> Bool? {
        precondition(!isSorted, "insert after sort")
        let key = Key(id)
        if key == Self.empty {
            if hasZero { return false }
            guard count < limit else { return nil }
            hasZero = true
            count += 1
            return true
        }
        var i = home(key)
        while true {
            let slot = slots[i]
            if slot == key { return false }
            if slot == Self.empty { break }
            i += 1
            if i == slots.count { i = 0 }
        }
        guard count < limit else { return nil }
        slots[i] = key
        count += 1
        return true
    }

    @inline(__always) private func home(_ key: Key) -> Int {
        Int(key.hi.multipliedFullWidth(by: UInt64(slots.count)).high)
    }

    /// Compacts the keys to the front and sorts them; afterwards the set answers `index(of:)`.
    func sort() {
        guard !isSorted else { return }
        // Keys that probing wrapped from the end of the table to its start belong at the end.
        var wrapped: [Key] = []
        var n = 0
        for i in 0..<slots.count where slots[i] != Self.empty {
            if i < slots.count / 2 && home(slots[i]) > i {
                wrapped.append(slots[i])
            } else {
                slots[n] = slots[i]
                n += 1
            }
        }
        for key in wrapped {
            slots[n] = key
            n += 1
        }
        // Insertion sort: each key moves only past the few its probe run displaced.
        for i in 1..<max(n, 1) {
            let key = slots[i]
            var j = i
            while j > 0 && key < slots[j - 1] {
                slots[j] = slots[j - 1]
                j -= 1
            }
            slots[j] = key
        }
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

    /// The key at sorted position `i`.
    subscript(i: Int) -> Key {
        precondition(isSorted && i < count)
        return slots[i]
    }

    /// The sorted position of `id`, or nil when it is not live.
    func index(of id: ChunkID) -> Int? {
        precondition(isSorted)
        let key = Key(id)
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            let candidate = slots[mid]
            if candidate == key { return mid }
            if candidate < key { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }

    /// A membership test for ids asked in ascending order: one forward pass, no search.
    func ascendingFilter() -> (ChunkID) -> Bool {
        precondition(isSorted)
        var next = 0
        return { [self] id in
            let key = Key(id)
            while next < count && self[next] < key { next += 1 }
            return next < count && self[next] == key
        }
    }
}
