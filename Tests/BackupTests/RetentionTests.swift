import ChunkStore
import Foundation
import JobFormat
import Jobs
import Testing

@Suite("Retention")
struct RetentionTests {
    /// One snapshot every 5 hours for 800 days, newest last.
    static let calendar = Calendar.current
    static let snapshots: [RetentionPolicy.Snapshot] = {
        let end = Date(timeIntervalSince1970: 1_790_000_000)
        var all: [RetentionPolicy.Snapshot] = []
        for i in 0..<(800 * 24 / 5) {
            let time = end.addingTimeInterval(-Double(i) * 5.0 * 3600.0)
            let tags: [String] = i % 97 == 0 ? ["monthly-report"] : []
            all.append(RetentionPolicy.Snapshot(id: String(format: "%08d", i), time: time, tags: tags))
        }
        return all
    }()

    /// The newest snapshot of each of the `n` most recent periods, computed independently.
    static func newestPerPeriod(_ n: Int, _ components: Set<Calendar.Component>) -> Set<String> {
        var best: [DateComponents: RetentionPolicy.Snapshot] = [:]
        for s in snapshots {
            let key = calendar.dateComponents(components, from: s.time)
            if let b = best[key], b.time >= s.time { continue }
            best[key] = s
        }
        return Set(best.values.sorted { $0.time > $1.time }.prefix(n).map(\.id))
    }

    @Test(
        "each rule keeps the newest snapshot of its last N periods",
        arguments: [
            ("hourly", 30), ("daily", 14), ("weekly", 8), ("monthly", 12), ("yearly", 3),
        ])
    func periodRules(rule: String, count: Int) {
        var p = RetentionPolicy()
        let components: Set<Calendar.Component>
        switch rule {
        case "hourly": p.hourly = count; components = [.year, .month, .day, .hour]
        case "daily": p.daily = count; components = [.year, .month, .day]
        case "weekly": p.weekly = count; components = [.yearForWeekOfYear, .weekOfYear]
        case "monthly": p.monthly = count; components = [.year, .month]
        default: p.yearly = count; components = [.year]
        }
        let d = p.apply(Self.snapshots, calendar: Self.calendar)
        #expect(Set(d.keep.map(\.id)) == Self.newestPerPeriod(count, components))
        #expect(d.keep.count + d.remove.count == Self.snapshots.count)
    }

    @Test("rules combine: a snapshot any rule keeps stays, with every reason")
    func combined() {
        var p = RetentionPolicy()
        p.last = 5
        p.daily = 7
        p.monthly = 6
        p.tags = ["monthly-report"]
        let d = p.apply(Self.snapshots, calendar: Self.calendar)
        let tagged = Set(Self.snapshots.filter { !$0.tags.isEmpty }.map(\.id))
        let expected = Set(Self.snapshots.prefix(5).map(\.id))
            .union(Self.newestPerPeriod(7, [.year, .month, .day]))
            .union(Self.newestPerPeriod(6, [.year, .month]))
            .union(tagged)
        #expect(Set(d.keep.map(\.id)) == expected)
        #expect(d.keep.first?.reasons.contains("last") == true)
        #expect(d.keep.first?.reasons.contains("daily") == true)
    }

    @Test("forget is a dry run by default, refuses to empty the store, and removes with --apply")
    func forgetCommand() throws {
        let f = try Fixture()
        for i in 0..<4 {
            write(f.source + "/b", randomBytes(1000, seed: UInt64(60 + i)))
            _ = try backup(f.store, [f.source])
        }
        #expect(try f.store.snapshots().records.count == 5)
        let none = try f.cli(["forget"])
        #expect(none.code != 0)
        #expect(none.stderr.contains("would remove every snapshot"))
        let dry = try f.cli(["forget", "--keep-last", "2"])
        #expect(dry.code == 0)
        #expect(dry.stdout.contains("3 snapshot(s) would be removed"))
        #expect(try f.store.snapshots().records.count == 5)
        let applied = try f.cli(["forget", "--keep-last", "2", "--apply"])
        #expect(applied.code == 0)
        #expect(try Store(path: f.storePath).snapshots().records.count == 2)
        #expect(try f.cli(["check"]).code == 0)
    }

    @Test("forget --prune removes and then frees the data in one command (a dry run still changes nothing); stats and diff work as top-level verbs too")
    func forgetPrune() throws {
        let f = try Fixture()
        write(f.source + "/b", randomBytes(300_000, seed: 81))
        let second = try backup(f.store, [f.source]).snapshotID
        let packs = {
            try FileManager.default.contentsOfDirectory(atPath: f.storePath + "/packs").flatMap {
                try FileManager.default.contentsOfDirectory(atPath: f.storePath + "/packs/" + $0)
            }.count
        }
        let before = try packs()
        let dry = try f.cli(["forget", "--keep-last", "1", "--prune"])
        #expect(dry.code == 0 && dry.stdout.contains("add --apply to remove them and prune"), "\(dry.stdout)")
        #expect(try Store(path: f.storePath).snapshots().records.count == 2 && (try packs()) == before)
        let applied = try f.cli(["forget", "--keep-last", "1", "--prune", "--apply", "--json"])
        #expect(applied.code == 0, "\(applied.stderr)")
        struct Report: Decodable { struct Prune: Decodable { var bytesFreed: UInt64 }; var remove: [String]; var prune: Prune? }
        let report = try JSONDecoder().decode(Report.self, from: Data(applied.stdout.utf8))
        #expect(report.remove == [f.snapshot])
        #expect((report.prune?.bytesFreed ?? 0) > 0, "the first snapshot's own chunks were freed")
        #expect(try Store(path: f.storePath).snapshots().records.map(\.id) == [second])
        #expect(try f.cli(["check", "--read-data"]).code == 0)
        // Top-level stats and diff are inspect's.
        #expect(try f.cli(["stats", "--json"]).stdout == (try f.cli(["inspect", "stats", "--json"])).stdout)
        #expect(try f.cli(["diff", second, second]).code == 0)
    }

    @Test("forget removes named snapshots (ids or prefixes), never with rules, never an unknown one")
    func forgetByID() throws {
        let f = try Fixture()
        write(f.source + "/b", randomBytes(1000, seed: 71 << 8))
        let second = try backup(f.store, [f.source]).snapshotID
        let mixed = try f.cli(["forget", String(second.prefix(8)), "--keep-last", "1"])
        #expect(mixed.code != 0 && mixed.stderr.contains("not both"))
        let unknown = try f.cli(["forget", "ffffffffffff", "--apply"])
        #expect(unknown.code != 0)
        #expect(try Store(path: f.storePath).snapshots().records.count == 2)
        let dry = try f.cli(["forget", String(second.prefix(8))])
        #expect(dry.code == 0 && dry.stdout.contains("1 snapshot(s) would be removed"))
        let applied = try f.cli(["forget", String(second.prefix(8)), "--apply"])
        #expect(applied.code == 0)
        #expect(try Store(path: f.storePath).snapshots().records.map(\.id) == [f.snapshot])
        // The last one goes only with --allow-empty.
        #expect(try f.cli(["forget", f.snapshot, "--apply"]).code != 0)
        #expect(try f.cli(["forget", f.snapshot, "--apply", "--allow-empty"]).code == 0)
        #expect(try Store(path: f.storePath).snapshots().records.isEmpty)
    }
}
