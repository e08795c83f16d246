import ChunkStore
import Foundation

/// The queues of one backup, its worker count, and the read buffers large files share (kept for the
/// whole backup: allocating and freeing 16 MiB blocks per file fragments the heap).
final class BackupLanes: @unchecked Sendable {
    let lanes: WorkLanes<Scanner.FileJob, ChunkBatch>
    let workers: Int
    private let lock = NSLock()
    private var pool: [UnsafeMutableRawBufferPointer] = []
    private var allocated: [UnsafeMutableRawBufferPointer] = []

    let progress: ProgressMeter

    init(workers: Int, progress: ProgressMeter) {
        self.workers = workers
        self.progress = progress
        lanes = WorkLanes(fileCapacity: 4 * workers, batchCapacity: 2 * workers)
    }

    deinit { for b in allocated { b.deallocate() } }

    /// At most this many large-file read buffers exist at once, whatever the number of large files:
    /// memory stays flat. A reader that finds none free hashes batches until one is.
    var bufferLimit: Int { workers + 1 }

    func takeBuffer(bytes: Int) -> UnsafeMutableRawBufferPointer? {
        lock.withLock {
            if let i = pool.firstIndex(where: { $0.count == bytes }) { return pool.remove(at: i) }
            guard allocated.count < bufferLimit else { return nil }
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 64)
            allocated.append(b)
            return b
        }
    }

    func giveBack(_ buffers: [UnsafeMutableRawBufferPointer]) { lock.withLock { pool.append(contentsOf: buffers) } }
}
