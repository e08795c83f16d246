import Foundation

/// Settings of a shadow copy session (VSS defaults).
public struct CoordinatorOptions: Sendable {
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
    public var retryBackoff: Duration = .seconds(1)
    /// Force one provider for every volume (nil: choose per volume).
    public var provider: ProviderKind?
    /// Keep the shadow copies after the backup (persistent); `shadowmover shadows` manages them.
    public var keep = false
    /// Selected writers or components: `WRITER` (name or label) or `WRITER/COMPONENT`; nil selects all.
    public var selection: [String]?

    public init() {}
}

/// The requester side of VSS on Linux: drives writers through a session and has providers take the
/// shadow copy set between freeze and thaw (DESIGN.md §3).
///
/// identify → select → resolve volumes → prepare-backup → prepare-snapshot → freeze → commit → thaw →
/// post-snapshot; `ShadowCopySession.complete` then sends backup-complete and releases the set. Any
/// failure after prepare-backup sends abort to every writer and deletes partial shadow copies.
public final class Coordinator: @unchecked Sendable {  // used from one thread; writer calls fan out and join
    public let options: CoordinatorOptions
    let slots: [WriterSlot]
    public let setID = UUID().uuidString.lowercased()

    public init(writers: [Writer], options: CoordinatorOptions) {
        self.options = options
        self.slots = writers.map(WriterSlot.init)
        signal(SIGPIPE, SIG_IGN)  // a writer that dies must not take the agent with it
    }

    // MARK: Identify and select

    /// Asks every writer for its metadata (as `shadowmover writers` shows them).
    public func identify() -> [WriterReport] {
        let deadline = ContinuousClock.now + options.eventTimeout
        let group = DispatchGroup()
        for slot in slots {
            group.enter()
            Thread {
                do {
                    slot.metadata = try slot.writer.identify(WriterContext(setID: self.setID, deadline: deadline))
                    slot.state = .stable
                } catch let e as WriterError {
                    slot.state = .failedAtIdentify
                    slot.lastError = e
                } catch {
                    slot.state = .failedAtIdentify
                    slot.lastError = WriterError(.nonRetryable, "\(error)")
                }
                group.leave()
            }.start()
        }
        group.wait()
        return slots.map(\.report)
    }

    /// Applies the selection: which writers take part and which of their components are backed up.
    func select() throws {
        guard let selection = options.selection else {
            for slot in slots {
                slot.selected = true
                slot.selectedComponents = slot.metadata?.components.map(\.fullPath) ?? []
            }
            return
        }
        var unmatched = Set(selection)
        for slot in slots {
            let names = [slot.writer.label, slot.metadata?.name].compactMap { $0 }
            var chosen: [String] = []
            for component in slot.metadata?.components ?? [] {
                for s in selection {
                    let whole = names.contains(s)
                    let one = names.contains { s == "\($0)/\(component.fullPath)" }
                    if whole || one || !component.selectable {
                        chosen.append(component.fullPath)
                        if whole || one { unmatched.remove(s) }
                    }
                }
            }
            for s in selection where names.contains(s) { unmatched.remove(s) }
            var seen = Set<String>()
            slot.selectedComponents = chosen.filter { seen.insert($0).inserted }
            slot.selected = selection.contains { s in names.contains { s == $0 || s.hasPrefix($0 + "/") } }
        }
        if !unmatched.isEmpty {
            throw ShadowCopyError.selection(
                "no writer or component matches \(unmatched.sorted().joined(separator: ", ")): list them with `shadowmover writers`")
        }
    }

    // MARK: The session

    /// Runs the session up to post-snapshot and returns it holding the shadow copy set.
    /// - Parameter paths: the paths the user backs up; the selected components' files are added.
    public func createShadowCopySet(paths: [String]) throws -> ShadowCopySession {
        try options.paths.ensure()
        var report = SessionReport(setID: setID)
        _ = identify()
        try select()
        for slot in slots where slot.selected && slot.state == .failedAtIdentify {
            throw ShadowCopyError.writerFailed(writer: slot.writer.label, event: .identify, slot.lastError!, attempts: 1)
        }
        for slot in slots where !slot.selected && slot.state == .failedAtIdentify {
            report.warnings.append("writer \(slot.writer.label) failed at identify (\(slot.lastError!)); it is not selected, so the backup goes on")
        }
        let involved = slots.filter { $0.selected && $0.metadata != nil }
        let (components, componentSpecs, excludes) = buildComponents()
        report.components = components

        // Resolve volumes and form the set.
        let mounts = try Mounts.load()
        var set = ShadowCopySet()
        var plans: [String: VolumePlan] = [:]
        for path in paths {
            guard let real = Mounts.realPath(path) else { throw ShadowCopyError.pathMissing(path) }
            let volume = try Mounts.volume(for: real, in: mounts)
            if plans[volume.device + volume.mountPoint] == nil {
                try set.add(volume)
                plans[volume.device + volume.mountPoint] = VolumePlan(volume: volume, provider: .none)
            }
            plans[volume.device + volume.mountPoint]!.paths.append(real)
        }
        // A component's files are on the volume of its directory; which files they are is decided at
        // the shadow copy, not now.
        for spec in componentSpecs {
            guard let real = Mounts.realPath(spec.path) else { continue }  // no directory: no files
            let volume = try Mounts.volume(for: real, in: mounts)
            if plans[volume.device + volume.mountPoint] == nil {
                try set.add(volume)
                plans[volume.device + volume.mountPoint] = VolumePlan(volume: volume, provider: .none)
            }
            var resolved = spec
            resolved.path = real
            plans[volume.device + volume.mountPoint]!.componentSpecs.append(resolved)
            plans[volume.device + volume.mountPoint]!.componentExcludes = excludes
        }
        let ordered = set.volumes.map { plans[$0.device + $0.mountPoint]! }
        for plan in ordered { plan.provider = chooseProvider(plan) }

        // One agent at a time defines a set; each volume in it is marked.
        let agentLock: PidLock
        switch try PidLock.acquire(options.paths.agentLock, wait: options.wait) {
        case .success(let lock): agentLock = lock
        case .failure(let holder): throw ShadowCopyError.setInProgress(pid: holder.pid)
        }
        var marks: [PidLock] = []
        do {
            for plan in ordered {
                switch try PidLock.acquire(options.paths.volumeMark(plan.volume), wait: nil) {
                case .success(let lock): marks.append(lock)
                case .failure(let holder): throw ShadowCopyError.volumeMarked(plan.volume, pid: holder.pid)
                }
            }
        } catch {
            agentLock.release()
            throw error
        }
        let registry = ShadowRegistry(paths: options.paths)
        for record in registry.list() where record.isOrphan {
            do {
                try registry.delete(record)
                report.warnings.append("deleted shadow copy \(record.properties.snapshotID.prefix(8)) of \(record.properties.volume.mountPoint) left by agent pid \(record.ownerPID), which is gone")
            } catch {
                report.warnings.append("cannot delete orphan shadow copy \(record.properties.snapshotID.prefix(8)): \(error)")
            }
        }

        var attempt = 0
        while true {
            attempt += 1
            report.attempts = attempt
            do {
                try runAttempt(plans: ordered, involved: involved, registry: registry, agentLock: agentLock, report: &report)
                break
            } catch let failure as ShadowCopyError {
                abortAll(involved, plans: ordered, registry: registry)
                if case .writerFailed(let w, let event, let e, _) = failure, e.failure.isRetryable, attempt <= options.retries {
                    report.warnings.append("attempt \(attempt): writer \(w) failed at \(event.rawValue) (\(e)); retrying")
                    let backoff = options.retryBackoff * (1 << min(attempt - 1, 10))
                    Thread.sleep(forTimeInterval: backoff.milliseconds / 1000)
                    continue
                }
                agentLock.release()
                for m in marks { m.release() }
                for slot in slots { slot.writer.shutdown() }
                if case .writerFailed(let w, let event, let e, _) = failure {
                    throw ShadowCopyError.writerFailed(writer: w, event: event, e, attempts: attempt)
                }
                throw failure
            } catch {
                abortAll(involved, plans: ordered, registry: registry)
                agentLock.release()
                for m in marks { m.release() }
                for slot in slots { slot.writer.shutdown() }
                throw error
            }
        }
        report.shadowCopies = ordered.compactMap(\.properties)
        report.warnings += ordered.flatMap { $0.properties?.warnings ?? [] }
        report.pointInTime = ordered.allSatisfy { $0.provider == .btrfs || $0.provider == .reflink || ($0.provider == .copy && $0.paths.isEmpty) }
        if slots.isEmpty && ordered.allSatisfy({ $0.provider == .none }) {
            report.warnings.append("no writers and no snapshot-capable filesystem: the files are read live, not from a shadow copy")
        }
        report.writers = slots.map(\.report)
        return ShadowCopySession(
            coordinator: self, plans: ordered, involved: involved, marks: marks, registry: registry, report: report,
            excludes: excludes)
    }

    /// prepare-backup → provider prepare → prepare-snapshot → freeze → commit → thaw → post-snapshot.
    private func runAttempt(
        plans: [VolumePlan], involved: [WriterSlot], registry: ShadowRegistry, agentLock: PidLock, report: inout SessionReport
    ) throws {
        try send(.prepareBackup, to: involved, deadline: .now + options.eventTimeout)

        for plan in plans {
            let snapshotID = UUID().uuidString.lowercased()
            // Recorded before anything exists on disk, so a killed agent's leftovers can be found.
            let placeholder = ShadowCopyProperties(
                snapshotID: snapshotID, setID: setID, volume: plan.volume, snapshotPath: plan.shadowDirectory + "/" + snapshotID,
                provider: plan.provider, created: Date(), host: ProcessInfo.processInfo.hostName, subvolumes: [:], warnings: [])
            if plan.provider != .none {
                try? registry.save(.init(properties: placeholder, ownerPID: getpid(), keep: options.keep, state: "creating"))
            }
            try Providers.make(plan.provider).prepare(plan, setID: setID, snapshotID: snapshotID)
        }

        try send(.prepareSnapshot, to: involved, deadline: .now + options.eventTimeout, volumes: plans.map(\.volume.mountPoint))

        // The freeze window. The deadline is armed before freeze is sent (KB915331).
        let windowStart = ContinuousClock.now
        let freezeDeadline = windowStart + options.freezeTimeout
        var phases: [FreezeWindow.Phase] = []
        func ms(_ i: ContinuousClock.Instant) -> Double { (i - windowStart).milliseconds }

        let frozen = WriterDispatch.send(.freeze, to: involved, deadline: freezeDeadline) { self.context($0, deadline: freezeDeadline) }
        for o in frozen {
            phases.append(.init(kind: "freeze", subject: o.slot.writer.label, startMs: ms(o.started), durationMs: (o.finished - o.started).milliseconds))
        }
        try record(.freeze, frozen)

        let commitDeadline = min(ContinuousClock.now + options.commitTimeout, freezeDeadline)
        for plan in plans {
            let started = ContinuousClock.now
            try Providers.make(plan.provider).commit(plan, deadline: commitDeadline)
            let finished = ContinuousClock.now
            phases.append(.init(kind: "commit", subject: "\(plan.volume.mountPoint) (\(plan.provider.rawValue))", startMs: ms(started), durationMs: (finished - started).milliseconds))
            if finished > commitDeadline {
                if finished > freezeDeadline, let w = involved.first {
                    throw ShadowCopyError.freezeTimeout(writer: w.writer.label, limit: options.freezeTimeout)
                }
                throw ShadowCopyError.commitTimeout(plan.volume, limit: options.commitTimeout)
            }
        }

        let thawed = WriterDispatch.send(.thaw, to: involved, deadline: freezeDeadline) { self.context($0, deadline: freezeDeadline) }
        for o in thawed {
            phases.append(.init(kind: "thaw", subject: o.slot.writer.label, startMs: ms(o.started), durationMs: (o.finished - o.started).milliseconds))
        }
        let windowEnd = thawed.map(\.finished).max() ?? ContinuousClock.now
        report.freezeWindow = FreezeWindow(totalMs: (windowEnd - windowStart).milliseconds, phases: phases)
        try record(.thaw, thawed)
        agentLock.release()  // the set is defined: the next agent may start its own

        for plan in plans {
            if let p = plan.properties, plan.provider != .none {
                try? registry.save(.init(properties: p, ownerPID: getpid(), keep: options.keep, state: "created"))
            }
        }
        var shadows: [String: String] = [:]
        for plan in plans { if let p = plan.properties { shadows[plan.volume.mountPoint] = p.snapshotPath } }
        // A failing post-snapshot does not undo the shadow copy (VSS): it is reported.
        let post = WriterDispatch.send(.postSnapshot, to: involved, deadline: .now + options.eventTimeout) { slot in
            var c = self.context(slot, deadline: .now + self.options.eventTimeout)
            c.shadowCopies = shadows
            return c
        }
        for o in post {
            switch o.result {
            case .failure(let e):
                o.slot.state = .failedAtPostSnapshot
                o.slot.lastError = e
                report.warnings.append("writer \(o.slot.writer.label) failed at post-snapshot: \(e)")
            case .success(let info):
                // What the writer says after the snapshot (a database's backup label) is kept with what
                // it said at freeze.
                o.slot.freezeInfo.merge(info) { _, new in new }
                o.slot.state = .waitingForBackupComplete
            }
        }
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

    private func record(_ event: WriterEvent, _ outcomes: [DispatchOutcome]) throws {
        var first: (WriterSlot, WriterError)?
        for o in outcomes {
            switch o.result {
            case .success(let info):
                o.slot.state = event.nextState
                if event == .freeze { o.slot.freezeInfo = info }
            case .failure(let e):
                o.slot.state = event.failedState
                o.slot.lastError = e
                if e.failure == .timeout || e.failure == .notResponding, let exec = o.slot.writer as? ExecWriter { exec.terminate() }
                if first == nil { first = (o.slot, e) }
            }
        }
        if let (slot, e) = first {
            if e.failure == .timeout && (event == .freeze || event == .thaw) {
                throw ShadowCopyError.writerFailed(writer: slot.writer.label, event: event, WriterError(.timeout, "held longer than its \(options.freezeTimeout) freeze limit: \(e.message)"), attempts: 1)
            }
            throw ShadowCopyError.writerFailed(writer: slot.writer.label, event: event, e, attempts: 1)
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

    /// The backup components document (files as they are at identify), the file descriptors of the
    /// selected components, and the writers' excludes.
    private func buildComponents() -> (BackupComponentsDocument, [FileDescriptor], [FileDescriptor]) {
        var document = BackupComponentsDocument()
        var specs: [FileDescriptor] = []
        var excludes: [FileDescriptor] = []
        for slot in slots {
            guard let m = slot.metadata else { continue }
            excludes += m.excludes
            var entries: [BackupComponentsDocument.ComponentEntry] = []
            for c in m.components {
                let selected = slot.selected && slot.selectedComponents.contains(c.fullPath)
                let expanded = c.files.flatMap { ComponentFiles.expand($0, excluding: m.excludes) }
                if selected { specs += c.files }
                entries.append(.init(logicalPath: c.logicalPath, name: c.name, type: c.type, selected: selected, files: expanded, backupSucceeded: nil, freezeInfo: nil))
            }
            document.writers.append(.init(
                name: m.name, classID: m.classID, instanceID: m.instanceID, instanceName: m.instanceName, components: entries,
                restoreMethod: m.restoreMethod.rawValue))
        }
        return (document, specs, excludes)
    }
}
