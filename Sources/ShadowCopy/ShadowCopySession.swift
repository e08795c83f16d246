import Foundation

/// A created shadow copy set, held until `complete`: the paths to read, where to read them from, and
/// the report for the snapshot record. Volume marks are held until release.
public final class ShadowCopySession: @unchecked Sendable {  // used from one thread
    /// What the session did so far.
    public private(set) var report: SessionReport
    /// One plan per volume of the set.
    public let plans: [VolumePlan]
    /// The writers' exclude lists.
    public let excludes: [FileDescriptor]
    let coordinator: Coordinator
    let involved: [WriterSlot]
    var marks: [PidLock]
    let registry: ShadowRegistry
    private var finished = false

    init(
        coordinator: Coordinator, plans: [VolumePlan], involved: [WriterSlot], marks: [PidLock], registry: ShadowRegistry,
        report: SessionReport, excludes: [FileDescriptor]
    ) {
        self.coordinator = coordinator
        self.plans = plans
        self.involved = involved
        self.marks = marks
        self.registry = registry
        self.report = report
        self.excludes = excludes
    }

    /// Files of the selected components as the shadow copy holds them (to back up alongside the user's
    /// paths): those that existed when it was taken — in a btrfs snapshot, matched there; captured by a
    /// reflink or copy provider; or, read live, matched now.
    public var componentFiles: [String] {
        var files: [String] = []
        for plan in plans {
            switch plan.provider {
            case .reflink, .copy:
                files += plan.capturedComponentFiles
            case .btrfs:
                let mappings = plan.properties?.subvolumes ?? [:]
                for spec in plan.componentSpecs {
                    guard
                        let (original, shadow) = mappings.filter({ spec.path == $0.key || spec.path.hasPrefix($0.key == "/" ? "/" : $0.key + "/") })
                            .max(by: { $0.key.count < $1.key.count })
                    else { continue }
                    var inShadow = spec
                    inShadow.path = shadow + spec.path.dropFirst(original == "/" ? 0 : original.count)
                    files += ComponentFiles.expand(inShadow, excluding: []).map {
                        original == "/" ? String($0.dropFirst(shadow.count)) : original + $0.dropFirst(shadow.count)
                    }
                }
            case .none:
                files += plan.componentSpecs.flatMap { ComponentFiles.expand($0, excluding: plan.componentExcludes) }
            }
        }
        return files
    }

    /// Files the writers want read from the live system now, after post-snapshot (`Writer.filesAfterSnapshot`).
    public var filesAfterSnapshot: [String] { involved.flatMap { $0.writer.filesAfterSnapshot } }

    /// Rules for reading: on volumes captured file by file, a live file matching a component's
    /// filespec that was not captured did not exist at the freeze, and is left out; and the files a
    /// writer calls transient may vanish while a live tree is read.
    public var componentRules: (all: [FileDescriptor], capturedOnly: [FileDescriptor], transient: [FileDescriptor]) {
        let byFile = plans.filter { $0.provider == .reflink || $0.provider == .copy }.flatMap(\.componentSpecs)
        let all = plans.flatMap(\.componentSpecs)
        return (all, byFile, all.filter(\.transient))
    }

    /// Subtrees to read from a snapshot instead of the live filesystem: original path → snapshot path.
    public var subtreeMappings: [(original: String, shadow: String)] {
        plans.flatMap { p in (p.properties?.subvolumes ?? [:]).map { (original: $0.key, shadow: $0.value) } }
    }

    /// Files captured by reflink or copy providers.
    public var capturedFiles: [String: CapturedFile] {
        var all: [String: CapturedFile] = [:]
        for p in plans { all.merge(p.captured) { a, _ in a } }
        return all
    }

    /// Hidden shadow directories, never to be backed up.
    public var shadowDirectories: [String] { plans.map(\.shadowDirectory) }

    /// Sends backup-complete with each component's result and releases the set (unless kept).
    public func complete(succeeded: Bool) {
        guard !finished else { return }
        finished = true
        var results: [String: Bool] = [:]
        for slot in involved { for c in slot.selectedComponents { results[c] = succeeded } }
        for w in report.components.writers.indices {
            for c in report.components.writers[w].components.indices where report.components.writers[w].components[c].selected {
                report.components.writers[w].components[c].backupSucceeded = succeeded
            }
        }
        let deadline = ContinuousClock.now + coordinator.options.eventTimeout
        let outcomes = WriterDispatch.send(.backupComplete, to: involved.filter { $0.state == .waitingForBackupComplete }, deadline: deadline) { slot in
            var c = self.coordinator.context(slot, deadline: deadline)
            c.results = results
            return c
        }
        coordinator.reportFailures(.backupComplete, outcomes, in: &report)
        release()
    }

    /// Stamps the components with what the writers reported at freeze and after the snapshot (a row
    /// count, a backup label), and with `atomic_snapshot` when all of a writer's selected files lie in
    /// one btrfs snapshot taken by one ioctl: then the copy is crash-consistent as a whole.
    public func annotateFreezeInfo() {
        for slot in involved {
            guard let w = report.components.writers.firstIndex(where: { $0.instanceID == slot.metadata?.instanceID }) else { continue }
            var info = slot.freezeInfo
            let specs = Set(
                (slot.metadata?.components ?? []).filter { slot.selectedComponents.contains($0.fullPath) }.flatMap(\.files).compactMap {
                    Mounts.realPath($0.path)
                })
            let holding = plans.filter { p in p.componentSpecs.contains { specs.contains($0.path) } }
            if !specs.isEmpty, holding.count == 1, holding[0].provider == .btrfs, (holding[0].properties?.subvolumes.count ?? 0) == 1 {
                info["atomic_snapshot"] = "true"
            }
            guard !info.isEmpty else { continue }
            for c in report.components.writers[w].components.indices where report.components.writers[w].components[c].selected {
                report.components.writers[w].components[c].freezeInfo = info
            }
        }
        report.components.backupStamp = ISO8601DateFormatter().string(from: Date())
        report.writers = coordinator.slots.map(\.report)
    }

    /// Deletes the shadow copies (unless kept), frees the volume marks and ends the writers.
    public func release() {
        finished = true
        if !coordinator.options.keep {
            for plan in plans {
                guard let p = plan.properties else { continue }
                do {
                    try Providers.make(plan.provider).delete(p)
                    registry.remove(p.snapshotID)
                } catch {
                    report.warnings.append(
                        "cannot delete shadow copy \(p.snapshotPath): \(error); remove it with `shadowmover shadows delete \(p.snapshotID.prefix(8))`")
                }
                rmdir(plan.shadowDirectory)  // only if empty
            }
        }
        for m in marks { m.release() }
        marks = []
        for slot in coordinator.slots { slot.writer.shutdown() }
    }

    deinit { if !finished { release() } }
}
