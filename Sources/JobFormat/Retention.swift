import Foundation

/// Which snapshots to keep (restic's `forget` rules): the last N, the newest of each of the last N
/// hours/days/weeks/months/years that have snapshots, and every snapshot with a kept tag. A snapshot
/// any rule keeps is kept. Buckets are calendar periods in the local time zone.
public struct RetentionPolicy: Sendable, Equatable {
    /// Keep the newest N snapshots.
    public var last = 0
    /// Keep the newest snapshot of each of the last N hours that have one.
    public var hourly = 0
    /// The same for days.
    public var daily = 0
    /// The same for weeks.
    public var weekly = 0
    /// The same for months.
    public var monthly = 0
    /// The same for years.
    public var yearly = 0
    /// Keep every snapshot with one of these tags.
    public var tags: [String] = []

    /// A policy that keeps nothing (set the rules).
    public init() {}

    /// True when no rule keeps anything.
    public var isEmpty: Bool { last == 0 && hourly == 0 && daily == 0 && weekly == 0 && monthly == 0 && yearly == 0 && tags.isEmpty }

    /// What the policy sees of a snapshot.
    public struct Snapshot: Sendable {
        /// Its id.
        public var id: String
        /// When it was taken.
        public var time: Date
        /// Its tags.
        public var tags: [String]
        /// A snapshot as the policy sees it.
        public init(id: String, time: Date, tags: [String]) {
            self.id = id
            self.time = time
            self.tags = tags
        }
    }

    /// Which snapshots stay and which go.
    public struct Decision: Sendable {
        /// Kept snapshot ids with the rules that keep them.
        public var keep: [(id: String, reasons: [String])]
        /// Ids of the snapshots no rule keeps.
        public var remove: [String]
    }

    /// Applies the policy to one group of snapshots (same host and paths).
    public func apply(_ snapshots: [Snapshot], calendar: Calendar = .current) -> Decision {
        let newestFirst = snapshots.sorted { $0.time > $1.time }
        var reasons: [String: [String]] = [:]
        for s in newestFirst.prefix(last) { reasons[s.id, default: []].append("last") }
        let rules: [(String, Int, (Date) -> [Int])] = [
            (
                "hourly", hourly,
                { d in
                    let c = calendar.dateComponents([.year, .month, .day, .hour], from: d); return [c.year!, c.month!, c.day!, c.hour!]
                }
            ),
            (
                "daily", daily,
                { d in
                    let c = calendar.dateComponents([.year, .month, .day], from: d); return [c.year!, c.month!, c.day!]
                }
            ),
            (
                "weekly", weekly,
                { d in
                    let c = calendar.dateComponents([.yearForWeekOfYear, .weekOfYear], from: d); return [c.yearForWeekOfYear!, c.weekOfYear!]
                }
            ),
            (
                "monthly", monthly,
                { d in
                    let c = calendar.dateComponents([.year, .month], from: d); return [c.year!, c.month!]
                }
            ),
            ("yearly", yearly, { d in [calendar.component(.year, from: d)] }),
        ]
        for (name, count, bucket) in rules where count > 0 {
            var seen = Set<[Int]>()
            for s in newestFirst {
                let b = bucket(s.time)
                guard !seen.contains(b) else { continue }
                seen.insert(b)
                if seen.count > count { break }
                reasons[s.id, default: []].append(name)
            }
        }
        for s in newestFirst where s.tags.contains(where: { tags.contains($0) }) { reasons[s.id, default: []].append("tag") }
        return Decision(
            keep: newestFirst.compactMap { s in reasons[s.id].map { (s.id, $0) } },
            remove: newestFirst.filter { reasons[$0.id] == nil }.map(\.id))
    }
}
