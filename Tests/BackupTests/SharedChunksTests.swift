import ChunkStore
import Foundation
import Testing

@testable import DataMover

/// Restore's chunks used more than once (`SharedChunks`): read once, then copied from memory, from the
/// file they were first written to, or after waiting for the worker reading them.
@Suite("Restore: chunks read once")
struct SharedChunksTests {
    /// A restored file of known bytes, opened for reading.
    final class File: ChunkSource, @unchecked Sendable {
        let fd: Int32
        init(_ s: Scratch, _ bytes: [UInt8]) {
            let path = s.sub("file-\(UUID().uuidString.prefix(8))")
            write(path, bytes)
            fd = open(path, O_RDONLY | O_CLOEXEC)
        }
        deinit { close(fd) }
    }

    let a = randomBytes(100_000, seed: 71)
    var id: ChunkID { ChunkID(hashing: a) }

    /// Asks `shared` for the chunk: its bytes, or nil when the caller must read it.
    static func copy(_ shared: SharedChunks, _ id: ChunkID, count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        let found = out.withUnsafeMutableBytes { shared.copy(id, into: $0) }
        return found ? out : nil
    }

    static func keep(_ shared: SharedChunks, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { shared.keep(ChunkID(hashing: bytes), $0) }
    }

    @Test("a chunk used three times is read once: held in memory, then read back from its file once written there; its last use forgets it")
    func heldThenReadBack() throws {
        let s = Scratch("shared-chunks")
        let shared = SharedChunks(contents: [[id], [id, id]], capacity: 1 << 20)
        #expect(Self.copy(shared, id, count: a.count) == nil)  // the first use reads it
        Self.keep(shared, a)
        #expect(Self.copy(shared, id, count: a.count) == a)  // held
        var file: File? = File(s, [UInt8](repeating: 7, count: 10) + a)
        weak let released = file
        shared.wrote([(id, 10)], in: file!)
        file = nil
        #expect(released != nil, "the file stays open while a use is to come")
        #expect(Self.copy(shared, id, count: a.count) == a)  // read back (the held copy was dropped)
        #expect(shared.reusedBytes == UInt64(2 * a.count))
        #expect(released == nil, "the last use releases the file")
        #expect(Self.copy(shared, id, count: a.count) == nil)
    }

    @Test("with no room in memory, a use before the chunk is on the disk reads it again; a use after reads it back")
    func noRoom() throws {
        let s = Scratch("shared-chunks-no-room")
        let shared = SharedChunks(contents: [[id], [id], [id]], capacity: 0)
        #expect(Self.copy(shared, id, count: a.count) == nil)
        Self.keep(shared, a)
        #expect(Self.copy(shared, id, count: a.count) == nil)  // not held, not yet written
        Self.keep(shared, a)
        let file = File(s, a)
        shared.wrote([(id, 0)], in: file)
        #expect(Self.copy(shared, id, count: a.count) == a)
        #expect(shared.reusedBytes == UInt64(a.count))
    }

    @Test("a worker that wants a chunk another is reading waits for it, even with no room in memory; if the read fails it reads the chunk itself")
    func waitsForTheReader() throws {
        /// The waiter's result, set on its own thread.
        final class Outcome: @unchecked Sendable {
            let done = DispatchSemaphore(value: 0)
            var bytes: [UInt8]?
        }
        for fails in [false, true] {
            let shared = SharedChunks(contents: [[id], [id]], capacity: 0)
            #expect(Self.copy(shared, id, count: a.count) == nil)  // this worker reads it
            let outcome = Outcome()
            let (a, id) = (a, id)
            Thread {
                outcome.bytes = Self.copy(shared, id, count: a.count)
                outcome.done.signal()
            }.start()
            while shared.waitingWorkers == 0 { usleep(1000) }
            if fails {
                shared.abandon(id)
                outcome.done.wait()
                #expect(outcome.bytes == nil, "after a failed read the waiter reads it itself")
            } else {
                Self.keep(shared, a)
                outcome.done.wait()
                #expect(outcome.bytes == a)
                #expect(shared.reusedBytes == UInt64(a.count))
            }
        }
    }

    @Test(
        "claimNow never waits: it takes a chunk used once, or a shared one nobody is reading and no copy of which is on hand; a use that comes meanwhile waits for its keep"
    )
    func claimNow() throws {
        let b = randomBytes(50_000, seed: 73)
        let idB = ChunkID(hashing: b)
        let shared = SharedChunks(contents: [[id, idB], [id], [idB]], capacity: 1 << 20)
        let once = ChunkID(hashing: randomBytes(10, seed: 75))
        #expect(shared.claimNow(once), "a chunk used once is always free to read")
        #expect(Self.copy(shared, id, count: a.count) == nil)  // another worker reads `id`
        #expect(!shared.claimNow(id), "being read by another: refused, not waited for")
        #expect(shared.claimNow(idB), "nobody has it: claimed")
        #expect(!shared.claimNow(idB), "now being read")
        Self.keep(shared, a)
        #expect(!shared.claimNow(id), "a copy is on hand: the next run copies it")
        #expect(Self.copy(shared, id, count: a.count) == a)
        // A use of `idB` while its claim is open waits for the claimer's keep, as for `copy`'s own claim.
        final class Outcome: @unchecked Sendable {
            let done = DispatchSemaphore(value: 0)
            var bytes: [UInt8]?
        }
        let outcome = Outcome()
        Thread {
            outcome.bytes = Self.copy(shared, idB, count: b.count)
            outcome.done.signal()
        }.start()
        while shared.waitingWorkers == 0 { usleep(1000) }
        Self.keep(shared, b)
        outcome.done.wait()
        #expect(outcome.bytes == b)
    }

    @Test("a chunk used once is never held, waited for or read back")
    func usedOnce() throws {
        let shared = SharedChunks(contents: [[id]], capacity: 1 << 20)
        #expect(Self.copy(shared, id, count: a.count) == nil)
        #expect(Self.copy(shared, id, count: a.count) == nil, "no wait: nobody marks a chunk used once as being read")
        Self.keep(shared, a)
        #expect(Self.copy(shared, id, count: a.count) == nil)
        #expect(shared.reusedBytes == 0)
    }
}
