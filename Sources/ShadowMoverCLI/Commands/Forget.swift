import ArgumentParser
import ChunkStore
import Foundation
import JobFormat
import Jobs

struct Forget: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove snapshots by a retention policy (a dry run unless --apply).",
        discussion: """
            Snapshots are grouped by host and paths; in each group a snapshot any rule keeps stays. \
            Or name the snapshots to remove (ids, unique prefixes, or `latest`) instead of rules. \
            Without --apply nothing is removed: the plan is shown. Removing every snapshot is refused \
            unless --allow-empty. Only snapshot records are removed; `prune` frees their data, or \
            --prune right after (as `restic forget --prune`).
            """)

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var progress: ProgressOptions
    @Argument(help: "Snapshots to remove (instead of --keep-* rules).") var snapshots: [String] = []
    @Option(help: "Keep the N most recent snapshots.") var keepLast = 0
    @Option(help: "Keep the newest snapshot of each of the last N hours.") var keepHourly = 0
    @Option(help: "Keep the newest snapshot of each of the last N days.") var keepDaily = 0
    @Option(help: "Keep the newest snapshot of each of the last N weeks.") var keepWeekly = 0
    @Option(help: "Keep the newest snapshot of each of the last N months.") var keepMonthly = 0
    @Option(help: "Keep the newest snapshot of each of the last N years.") var keepYearly = 0
    @Option(help: "Keep every snapshot with this tag (repeatable).") var keepTag: [String] = []
    @Flag(help: "Remove the snapshots (default: only show what would go).") var apply = false
    @Flag(help: "Allow removing every snapshot.") var allowEmpty = false
    @Flag(help: "With --apply, prune right after: free the data no snapshot references (5% --max-unused).") var prune = false

    func run() throws {
        var policy = RetentionPolicy()
        policy.last = keepLast
        policy.hourly = keepHourly
        policy.daily = keepDaily
        policy.weekly = keepWeekly
        policy.monthly = keepMonthly
        policy.yearly = keepYearly
        policy.tags = keepTag
        guard [keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly].allSatisfy({ $0 >= 0 }) else {
            throw ValidationError("--keep-* counts cannot be negative")
        }
        if !snapshots.isEmpty && !policy.isEmpty {
            throw ValidationError("name snapshots or give --keep-* rules, not both")
        }
        guard !policy.isEmpty || !snapshots.isEmpty || allowEmpty else {
            throw ValidationError("no --keep-* rule given: that would remove every snapshot; add rules, or --allow-empty")
        }
        let store = try storeOptions.open()
        let (records, damaged) = try store.snapshots()
        for d in damaged { Output.warn("warning: \(d)") }
        var keep: [(id: String, reasons: [String])] = []
        var remove: [String] = []
        if snapshots.isEmpty {
            let groups = Dictionary(grouping: records) { "\($0.record.hostname)\u{0}\($0.record.paths.joined(separator: "\u{0}"))" }
            for (_, group) in groups.sorted(by: { $0.key < $1.key }) {
                let d = policy.apply(group.map { .init(id: $0.id, time: $0.record.time, tags: $0.record.tags) })
                keep += d.keep
                remove += d.remove
            }
        } else {
            let named = Set(try snapshots.map { try store.resolveSnapshot($0).id })
            remove = records.map(\.id).filter { named.contains($0) }
            keep = records.map(\.id).filter { !named.contains($0) }.map { ($0, ["not named"]) }
        }
        if keep.isEmpty && !remove.isEmpty && !allowEmpty {
            throw ValidationError("this policy removes every snapshot (\(remove.count)); pass --allow-empty if that is what you want")
        }
        if apply {
            let lock = try StoreLock.acquire(store, exclusive: true, purpose: "forget")
            defer { lock.release() }
            for id in remove { try store.deleteSnapshot(id: id) }
        }
        var pruner = Pruner(store: store)
        pruner.progress = Output.progress(json: output.json, options: progress)
        let pruned = try apply && prune ? Output.withProgress(json: output.json) { try pruner.run() } : nil
        if output.json {
            struct Item: Encodable { var id: String; var reasons: [String] }
            struct Report: Encodable { var keep: [Item]; var remove: [String]; var applied: Bool; var prune: Pruner.Report? }
            try Output.json(Report(keep: keep.map { Item(id: $0.id, reasons: $0.reasons) }, remove: remove, applied: apply, prune: pruned))
        } else {
            for k in keep { Output.line("keep   \(k.id.prefix(8))  (\(k.reasons.joined(separator: ", ")))") }
            for r in remove { Output.line("\(apply ? "removed" : "remove ") \(r.prefix(8))") }
            Output.line(
                apply
                    ? "\(remove.count) snapshot(s) removed, \(keep.count) kept" + (prune ? "" : "; run `shadowmover prune` to free their data")
                    : "dry run: \(remove.count) snapshot(s) would be removed, \(keep.count) kept; add --apply to remove them" + (prune ? " and prune" : ""))
            if let pruned { Prune.print(pruned) }
        }
    }
}
