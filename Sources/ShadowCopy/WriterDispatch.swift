import Foundation

/// A writer in a session: its metadata, state and selection.
final class WriterSlot: @unchecked Sendable {  // written by the coordinator between dispatches
    let writer: Writer
    var metadata: WriterMetadata?
    var state: WriterState = .stable
    var selected = true
    var selectedComponents: [String] = []
    var lastError: WriterError?
    var freezeInfo: [String: String] = [:]

    init(_ writer: Writer) { self.writer = writer }

    var report: WriterReport {
        WriterReport(
            label: writer.label, name: metadata?.name, instanceID: metadata?.instanceID, state: state, selected: selected,
            lastError: lastError?.description, metadata: metadata)
    }
}

/// The outcome of one event sent to one writer.
struct DispatchOutcome {
    var slot: WriterSlot
    var result: Result<[String: String], WriterError>
    var started: ContinuousClock.Instant
    var finished: ContinuousClock.Instant
}

enum WriterDispatch {
    /// Sends `event` to every slot at once, one thread each (a slow writer must not delay the others'
    /// freeze), and waits for all: each writer answers by `deadline` or counts as timed out.
    static func send(
        _ event: WriterEvent, to slots: [WriterSlot], deadline: ContinuousClock.Instant,
        context: (WriterSlot) -> WriterContext
    ) -> [DispatchOutcome] {
        guard !slots.isEmpty else { return [] }
        let outcomes = OutcomeBox(count: slots.count)
        let group = DispatchGroup()
        for (i, slot) in slots.enumerated() {
            let ctx = context(slot)
            group.enter()
            let thread = Thread {
                let started = ContinuousClock.now
                let result: Result<[String: String], WriterError>
                do {
                    result = .success(try slot.writer.handle(event, ctx))
                } catch let e as WriterError {
                    result = .failure(e)
                } catch {
                    result = .failure(WriterError(.nonRetryable, "\(slot.writer.label): \(error)"))
                }
                outcomes.set(i, DispatchOutcome(slot: slot, result: result, started: started, finished: .now))
                group.leave()
            }
            thread.start()
        }
        // Writers honour their deadline; the margin covers a writer stuck in a call it cannot interrupt.
        let margin = Duration.seconds(1)
        let wait = max(.zero, deadline - .now + margin)
        _ = group.wait(timeout: .now() + .milliseconds(Int(wait.milliseconds)))
        return outcomes.snapshot().enumerated().map { i, o in
            o
                ?? DispatchOutcome(
                    slot: slots[i], result: .failure(WriterError(.timeout, "\(slots[i].writer.label) did not answer \(event.rawValue) in time")), started: .now,
                    finished: .now)
        }
    }
}

/// Results filled in by the dispatch threads.
private final class OutcomeBox: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var items: [DispatchOutcome?]
    init(count: Int) { items = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ o: DispatchOutcome) { lock.withLock { items[i] = o } }
    func snapshot() -> [DispatchOutcome?] { lock.withLock { items } }
}
