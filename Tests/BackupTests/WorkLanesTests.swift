import Foundation
import Testing

@testable import DataMover

/// Backup's work lanes: files from the scanner, chunk batches of large files from the workers.
@Suite("Backup: work lanes")
struct WorkLanesTests {
    /// Pops on a thread of its own until the lanes end, recording what it got.
    final class Consumer: @unchecked Sendable {
        private let lock = NSLock()
        private var got: [String] = []
        private var ended = false
        private let done = DispatchSemaphore(value: 0)

        init(_ lanes: WorkLanes<Int, String>) {
            Thread.detachNewThread { [self] in
                while let work = lanes.pop() {
                    switch work {
                    case .file(let f):
                        lock.withLock { got.append("file \(f)") }
                        lanes.finished()
                    case .batch(let b): lock.withLock { got.append(b) }
                    }
                }
                lock.withLock { ended = true }
                done.signal()
            }
        }

        var state: (got: [String], ended: Bool) { lock.withLock { (got, ended) } }
        func wait(seconds: Double) -> Bool { done.wait(timeout: .now() + seconds) == .success }
    }

    @Test("an idle worker stays for a large file's batches after the scanner is done, and leaves when the file is")
    func idleWorkerWaitsForBatches() {
        let lanes = WorkLanes<Int, String>(fileCapacity: 4, batchCapacity: 4)
        lanes.push(file: 1)
        lanes.close()  // the scanner has queued its last file
        guard case .file(1) = lanes.pop() else {
            Issue.record("the queued file was not handed out")
            return
        }
        // This worker now reads the large file; another one is idle with nothing queued.
        let idle = Consumer(lanes)
        Thread.sleep(forTimeInterval: 0.1)
        #expect(idle.state.ended == false, "an idle worker left while a file being read could still add batches")
        #expect(lanes.tryPush(batch: "batch 1"))
        #expect(lanes.tryPush(batch: "batch 2"))
        Thread.sleep(forTimeInterval: 0.1)
        #expect(idle.state == (["batch 1", "batch 2"], false))
        lanes.finished()  // the large file is read to its end
        #expect(idle.wait(seconds: 10), "the idle worker did not leave once the last file was done")
        #expect(idle.state == (["batch 1", "batch 2"], true))
    }

    @Test("lanes closed with files queued hand every file out before they end")
    func filesDrainAfterClose() {
        let lanes = WorkLanes<Int, String>(fileCapacity: 8, batchCapacity: 4)
        for f in 1...5 { lanes.push(file: f) }
        lanes.close()
        let worker = Consumer(lanes)
        #expect(worker.wait(seconds: 10))
        #expect(worker.state == ((1...5).map { "file \($0)" }, true))
    }
}
