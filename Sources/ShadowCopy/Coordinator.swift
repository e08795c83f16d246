import Foundation

/// Settings of a shadow copy session (VSS defaults).
public struct CoordinatorOptions: Sendable {
    /// Where locks and shadow copy records live.
    public var paths = CoordinatorPaths()
    /// How long to wait for another agent's set to be created (nil: fail at once).
    public var wait: Duration?
    /// Freeze → thaw limit per writer, armed before freeze is sent (VSS: 60 s).
    public var freezeTimeout: Duration = .seconds(60)
    /// Provider commit limit for the whole set (VSS flush-and-hold: 10 s).
    public var commitTimeout: Duration = .seconds(10)
    /// Limit for the other events (identify, prepare, post-snapshot, backup-complete).
    public var eventTimeout: Duration = .seconds(300)
    /// Retries after retryable, timeout and out-of-resources failures, with exponential back-off.
    public var retries = 3
    /// The wait before the first retry, doubled each time.
    public var retryBackoff: Duration = .seconds(1)
    /// Force one provider for every volume (nil: choose per volume).
    public var provider: ProviderKind?
    /// Keep the shadow copies after the backup (persistent); `shadowmover shadows` manages them.
    public var keep = false
    /// Selected writers or components: `WRITER` (name or label) or `WRITER/COMPONENT`; nil selects all.
    public var selection: [String]?

    /// The defaults (docs/WRITERS.md lists them).
    public init() {}

    /// The longest limit, back-off or wait a user may give: a year ("wait as long as it takes"). A
    /// longer one is a typo, and a huge or infinite one would not fit a `Duration` in milliseconds.
    public static let longestSeconds: Double = 365 * 24 * 3600

    /// `seconds` (a limit, back-off or wait as typed in a job file or on the command line) as a
    /// duration in whole milliseconds (rounded up: a positive limit never becomes 0), or nil unless it
    /// is a finite number from 0 to `longestSeconds`.
    public static func duration(seconds: Double) -> Duration? {
        guard seconds.isFinite, seconds >= 0, seconds <= longestSeconds else { return nil }
        return .milliseconds(Int64((seconds * 1000).rounded(.up)))
    }
}

/// The requester side of VSS on Linux: drives writers through a session and has providers take the
/// shadow copy set between freeze and thaw (DESIGN.md §3).
///
/// identify → select → resolve volumes → prepare-backup → prepare-snapshot → freeze → commit → thaw →
/// post-snapshot; `ShadowCopySession.complete` then sends backup-complete and releases the set. Any
/// failure after prepare-backup sends abort to every writer and deletes partial shadow copies.
public final class Coordinator: @unchecked Sendable {  // used from one thread; writer calls fan out and join
    /// Time limits, retries, provider and selection.
    public let options: CoordinatorOptions
    let slots: [WriterSlot]
    /// The id of the shadow copy set this coordinator defines.
    public let setID = UUID().uuidString.lowercased()

    /// A coordinator of `writers`.
    public init(writers: [Writer], options: CoordinatorOptions) {
        self.options = options
        self.slots = writers.map(WriterSlot.init)
        signal(SIGPIPE, SIG_IGN)  // a writer that dies must not take the agent with it
    }

    // MARK: The session

    /// Runs the session up to post-snapshot and returns it holding the shadow copy set. The steps:
    /// identify and select writers, resolve paths and components to volumes, lock the set, clean up
    /// orphans, then freeze–snapshot–thaw (retried when a writer's failure is retryable).
    /// - Parameter paths: the paths the user backs up; the selected components' files are added.
    public func createShadowCopySet(paths: [String]) throws -> ShadowCopySession {
        try options.paths.ensure()
        var report = SessionReport(setID: setID)
        let involved = try identifyAndSelect(&report)
        let (components, componentSpecs, excludes) = buildComponents()
        report.components = components
        let plans = try planVolumes(paths: paths, componentSpecs: componentSpecs, excludes: excludes)
        let (agentLock, marks) = try lockSet(plans)
        let registry = ShadowRegistry(paths: options.paths)
        deleteOrphans(registry, &report)
        do {
            try attempt(plans: plans, involved: involved, registry: registry, agentLock: agentLock, report: &report)
        } catch {
            agentLock.release()
            for m in marks { m.release() }
            for slot in slots { slot.writer.shutdown() }
            throw error
        }
        finish(&report, plans: plans)
        return ShadowCopySession(
            coordinator: self, plans: plans, involved: involved, marks: marks, registry: registry, report: report,
            excludes: excludes)
    }

    /// Identify and select; a selected writer that failed at identify stops the session. - Returns:
    /// the writers taking part.
    private func identifyAndSelect(_ report: inout SessionReport) throws -> [WriterSlot] {
        _ = identify()
        try select()
        for slot in slots where slot.selected && slot.state == .failedAtIdentify {
            throw ShadowCopyError.writerFailed(writer: slot.writer.label, event: .identify, slot.lastError!, attempts: 1)
        }
        for slot in slots where !slot.selected && slot.state == .failedAtIdentify {
            report.warnings.append("writer \(slot.writer.label) failed at identify (\(slot.lastError!)); it is not selected, so the backup goes on")
        }
        return slots.filter { $0.selected && $0.metadata != nil }
    }

    /// Resolves the paths and the components' directories to volumes: the shadow copy set, one plan
    /// per volume with its provider chosen. A component's files are on the volume of its directory;
    /// which files they are is decided at the shadow copy, not now.
    private func planVolumes(paths: [String], componentSpecs: [FileDescriptor], excludes: [FileDescriptor]) throws -> [VolumePlan] {
        let mounts = try Mounts.load()
        var set = ShadowCopySet()
        var plans: [String: VolumePlan] = [:]
        func plan(for real: String) throws -> VolumePlan {
            let volume = try Mounts.volume(for: real, in: mounts)
            let key = volume.device + volume.mountPoint
            if let existing = plans[key] { return existing }
            try set.add(volume)
            let made = VolumePlan(volume: volume, provider: .none)
            plans[key] = made
            return made
        }
        for path in paths {
            guard let real = Mounts.realPath(path) else { throw ShadowCopyError.pathMissing(path) }
            try plan(for: real).paths.append(real)
        }
        for spec in componentSpecs {
            guard let real = Mounts.realPath(spec.path) else { continue }  // no directory: no files
            var resolved = spec
            resolved.path = real
            let p = try plan(for: real)
            p.componentSpecs.append(resolved)
            p.componentExcludes = excludes
        }
        let ordered = set.volumes.map { plans[$0.device + $0.mountPoint]! }
        for plan in ordered { plan.provider = chooseProvider(plan) }
        return ordered
    }

    /// One agent at a time defines a set; each volume in it is marked.
    private func lockSet(_ plans: [VolumePlan]) throws -> (agent: PidLock, marks: [PidLock]) {
        let agentLock: PidLock
        switch try PidLock.acquire(options.paths.agentLock, wait: options.wait) {
        case .success(let lock): agentLock = lock
        case .failure(let holder): throw ShadowCopyError.setInProgress(pid: holder.pid)
        }
        var marks: [PidLock] = []
        do {
            for plan in plans {
                switch try PidLock.acquire(options.paths.volumeMark(plan.volume), wait: nil) {
                case .success(let lock): marks.append(lock)
                case .failure(let holder): throw ShadowCopyError.volumeMarked(plan.volume, pid: holder.pid)
                }
            }
        } catch {
            agentLock.release()
            for m in marks { m.release() }
            throw error
        }
        return (agentLock, marks)
    }

    /// Shadow copies left by agents that are gone.
    private func deleteOrphans(_ registry: ShadowRegistry, _ report: inout SessionReport) {
        for record in registry.list() where record.isOrphan {
            do {
                try registry.delete(record)
                report.warnings.append(
                    "deleted shadow copy \(record.properties.snapshotID.prefix(8)) of \(record.properties.volume.mountPoint) left by agent pid \(record.ownerPID), which is gone"
                )
            } catch {
                report.warnings.append("cannot delete orphan shadow copy \(record.properties.snapshotID.prefix(8)): \(error)")
            }
        }
    }

    /// Runs attempts until one succeeds; every failed one is aborted. A writer's retryable failure is
    /// tried again after a back-off, up to `options.retries` times.
    private func attempt(plans: [VolumePlan], involved: [WriterSlot], registry: ShadowRegistry, agentLock: PidLock, report: inout SessionReport) throws {
        var attempt = 0
        while true {
            attempt += 1
            report.attempts = attempt
            do {
                return try runAttempt(plans: plans, involved: involved, registry: registry, agentLock: agentLock, report: &report)
            } catch let failure as ShadowCopyError {
                abortAll(involved, plans: plans, registry: registry)
                guard case .writerFailed(let w, let event, let e, _) = failure else { throw failure }
                if e.failure.isRetryable, attempt <= options.retries {
                    report.warnings.append("attempt \(attempt): writer \(w) failed at \(event.rawValue) (\(e)); retrying")
                    let backoff = options.retryBackoff * (1 << min(attempt - 1, 10))
                    Thread.sleep(forTimeInterval: backoff.milliseconds / 1000)
                    continue
                }
                throw ShadowCopyError.writerFailed(writer: w, event: event, e, attempts: attempt)
            } catch {
                abortAll(involved, plans: plans, registry: registry)
                throw error
            }
        }
    }

    /// What the report says about the set that was taken.
    private func finish(_ report: inout SessionReport, plans: [VolumePlan]) {
        report.shadowCopies = plans.compactMap(\.properties)
        report.warnings += plans.flatMap { $0.properties?.warnings ?? [] }
        report.pointInTime = plans.allSatisfy { $0.provider == .btrfs || $0.provider == .reflink || ($0.provider == .copy && $0.paths.isEmpty) }
        if slots.isEmpty && plans.allSatisfy({ $0.provider == .none }) {
            report.warnings.append("no writers and no snapshot-capable filesystem: the files are read live, not from a shadow copy")
        }
        report.writers = slots.map(\.report)
    }

    /// prepare-backup → provider prepare → prepare-snapshot → freeze → commit → thaw → post-snapshot.
    private func runAttempt(
        plans: [VolumePlan], involved: [WriterSlot], registry: ShadowRegistry, agentLock: PidLock, report: inout SessionReport
    ) throws {
        try send(.prepareBackup, to: involved, deadline: .now + options.eventTimeout)
        try prepareProviders(plans, registry: registry)
        try send(.prepareSnapshot, to: involved, deadline: .now + options.eventTimeout, volumes: plans.map(\.volume.mountPoint))
        try freezeCommitThaw(plans, involved: involved, report: &report)
        agentLock.release()  // the set is defined: the next agent may start its own
        for plan in plans {
            if let p = plan.properties, plan.provider != .none {
                try? registry.save(.init(properties: p, ownerPID: getpid(), keep: options.keep, state: "created"))
            }
        }
        postSnapshot(plans, involved: involved, report: &report)
    }

    /// Each provider's preparation, its shadow copy recorded before anything exists on disk, so a
    /// killed agent's leftovers can be found.
    private func prepareProviders(_ plans: [VolumePlan], registry: ShadowRegistry) throws {
        for plan in plans {
            let snapshotID = UUID().uuidString.lowercased()
            let placeholder = ShadowCopyProperties(
                snapshotID: snapshotID, setID: setID, volume: plan.volume, snapshotPath: plan.shadowDirectory + "/" + snapshotID,
                provider: plan.provider, created: Date(), host: ProcessInfo.processInfo.hostName, subvolumes: [:], warnings: [])
            if plan.provider != .none {
                try? registry.save(.init(properties: placeholder, ownerPID: getpid(), keep: options.keep, state: "creating"))
            }
            try Providers.make(plan.provider).prepare(plan, setID: setID, snapshotID: snapshotID)
        }
    }

    /// The freeze window: freeze every writer, commit every volume's shadow copy, thaw; each step timed.
    /// The deadline is armed before freeze is sent (KB915331).
    private func freezeCommitThaw(_ plans: [VolumePlan], involved: [WriterSlot], report: inout SessionReport) throws {
        let windowStart = ContinuousClock.now
        let freezeDeadline = windowStart + options.freezeTimeout
        var phases: [FreezeWindow.Phase] = []
        func ms(_ i: ContinuousClock.Instant) -> Double { (i - windowStart).milliseconds }
        func timed(_ kind: String, _ outcomes: [DispatchOutcome]) {
            for o in outcomes {
                phases.append(.init(kind: kind, subject: o.slot.writer.label, startMs: ms(o.started), durationMs: (o.finished - o.started).milliseconds))
            }
        }

        let frozen = WriterDispatch.send(.freeze, to: involved, deadline: freezeDeadline) { self.context($0, deadline: freezeDeadline) }
        timed("freeze", frozen)
        try record(.freeze, frozen)

        let commitDeadline = min(ContinuousClock.now + options.commitTimeout, freezeDeadline)
        for plan in plans {
            let started = ContinuousClock.now
            try Providers.make(plan.provider).commit(plan, deadline: commitDeadline)
            let finished = ContinuousClock.now
            phases.append(
                .init(
                    kind: "commit", subject: "\(plan.volume.mountPoint) (\(plan.provider.rawValue))", startMs: ms(started),
                    durationMs: (finished - started).milliseconds))
            if finished > commitDeadline {
                if finished > freezeDeadline, let w = involved.first {
                    throw ShadowCopyError.freezeTimeout(writer: w.writer.label, limit: options.freezeTimeout)
                }
                throw ShadowCopyError.commitTimeout(plan.volume, limit: options.commitTimeout)
            }
        }

        let thawed = WriterDispatch.send(.thaw, to: involved, deadline: freezeDeadline) { self.context($0, deadline: freezeDeadline) }
        timed("thaw", thawed)
        let windowEnd = thawed.map(\.finished).max() ?? ContinuousClock.now
        report.freezeWindow = FreezeWindow(totalMs: (windowEnd - windowStart).milliseconds, phases: phases)
        try record(.thaw, thawed)
    }

    /// post-snapshot, with the shadow copies' paths. A failing post-snapshot does not undo the shadow
    /// copy (VSS): it is reported.
    private func postSnapshot(_ plans: [VolumePlan], involved: [WriterSlot], report: inout SessionReport) {
        var shadows: [String: String] = [:]
        for plan in plans { if let p = plan.properties { shadows[plan.volume.mountPoint] = p.snapshotPath } }
        let post = WriterDispatch.send(.postSnapshot, to: involved, deadline: .now + options.eventTimeout) { slot in
            var c = self.context(slot, deadline: .now + self.options.eventTimeout)
            c.shadowCopies = shadows
            return c
        }
        reportFailures(.postSnapshot, post, in: &report)
    }

    func context(_ slot: WriterSlot, deadline: ContinuousClock.Instant) -> WriterContext {
        var c = WriterContext(setID: setID, deadline: deadline)
        c.selectedComponents = slot.selectedComponents
        return c
    }

    /// Sends an event and turns the first failure into an error (after recording every writer's state).
    private func send(_ event: WriterEvent, to involved: [WriterSlot], deadline: ContinuousClock.Instant, volumes: [String] = []) throws {
        let outcomes = WriterDispatch.send(event, to: involved, deadline: deadline) { slot in
            var c = self.context(slot, deadline: deadline)
            c.volumes = volumes
            return c
        }
        try record(event, outcomes)
    }

    /// Records an event whose failure stops the session: every writer's new state, then the first
    /// failure thrown (a writer that timed out or stopped answering is terminated).
    private func record(_ event: WriterEvent, _ outcomes: [DispatchOutcome]) throws {
        var first: (WriterSlot, WriterError)?
        for o in outcomes {
            guard let e = apply(event, o) else { continue }
            if e.failure == .timeout || e.failure == .notResponding, let exec = o.slot.writer as? ExecWriter { exec.terminate() }
            if first == nil { first = (o.slot, e) }
        }
        if let (slot, e) = first {
            if e.failure == .timeout && (event == .freeze || event == .thaw) {
                throw ShadowCopyError.writerFailed(
                    writer: slot.writer.label, event: event, WriterError(.timeout, "held longer than its \(options.freezeTimeout) freeze limit: \(e.message)"),
                    attempts: 1)
            }
            throw ShadowCopyError.writerFailed(writer: slot.writer.label, event: event, e, attempts: 1)
        }
    }

    /// Records an event whose failure does not undo the shadow copy (post-snapshot, backup-complete,
    /// as in VSS): every writer's new state, and a warning for each failure.
    func reportFailures(_ event: WriterEvent, _ outcomes: [DispatchOutcome], in report: inout SessionReport) {
        for o in outcomes {
            if let e = apply(event, o) { report.warnings.append("writer \(o.slot.writer.label) failed at \(event.rawValue): \(e)") }
        }
    }

    /// Moves a writer to the state its answer to `event` leaves it in, keeping what it reported at
    /// freeze and after the snapshot (a database's backup label). - Returns: its failure, if any.
    private func apply(_ event: WriterEvent, _ o: DispatchOutcome) -> WriterError? {
        switch o.result {
        case .success(let info):
            o.slot.state = event.nextState
            if event == .freeze { o.slot.freezeInfo = info }
            if event == .postSnapshot { o.slot.freezeInfo.merge(info) { _, new in new } }
            return nil
        case .failure(let e):
            o.slot.state = event.failedState
            o.slot.lastError = e
            return e
        }
    }

    /// Abort: every involved writer undoes freeze (within a second), partial shadow copies are deleted.
    func abortAll(_ involved: [WriterSlot], plans: [VolumePlan], registry: ShadowRegistry) {
        let deadline = ContinuousClock.now + .seconds(1)
        // A writer already ended after a failure got its EOF and SIGTERM: abort has nobody to reach.
        let reachable = involved.filter { ($0.writer as? ExecWriter)?.isStopped != true }
        let outcomes = WriterDispatch.send(.abort, to: reachable, deadline: deadline) { self.context($0, deadline: deadline) }
        for o in outcomes {
            if case .failure(let e) = o.result {
                o.slot.lastError = e
                if let exec = o.slot.writer as? ExecWriter { exec.terminate() }  // EOF, then SIGTERM: thaw
            } else if !o.slot.state.isFailed {
                o.slot.state = .stable
            }
        }
        for plan in plans {
            if let p = plan.properties {
                try? Providers.make(plan.provider).delete(p)
                registry.remove(p.snapshotID)
            }
            for record in registry.list() where record.properties.setID == setID && record.properties.volume == plan.volume {
                try? registry.delete(record)
            }
            plan.properties = nil
            plan.captured = [:]
        }
    }

    private func chooseProvider(_ plan: VolumePlan) -> ProviderKind {
        if let forced = options.provider { return forced }
        if plan.volume.readOnly { return .none }  // nothing can change: reading it live is point-in-time
        if plan.volume.fsType == "btrfs" { return .btrfs }
        if ["xfs", "bcachefs", "ocfs2"].contains(plan.volume.fsType) {
            let probe = plan.shadowDirectory + "/.probe-\(getpid())"
            if (try? mkdirs(probe)) != nil {
                let ok = CloneProvider.supportsReflink(in: probe)
                try? removeTree(probe)
                rmdir(plan.shadowDirectory)
                if ok { return .reflink }
            }
        }
        return plan.componentSpecs.isEmpty ? .none : .copy
    }
}
