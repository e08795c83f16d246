import CLinux
import ChunkStore
import Compression
import Foundation

extension Restorer {
    /// A file whose contents are being restored: the descriptor that created it (every write and its
    /// metadata go through it), its directory (to remove it by name if its data is damaged), and how
    /// many of its parts are still being written. The descriptor closes with the last reference.
    final class RestoringFile: ChunkSource, @unchecked Sendable {  // `left` and `damaged` guarded by `lock`
        let fd: Int32
        let directory: TargetDirectory
        let entry: Entry
        private let lock = NSLock()
        private var left: Int
        private var damaged = false

        init(fd: Int32, directory: TargetDirectory, entry: Entry, parts: Int) {
            self.fd = fd
            self.directory = directory
            self.entry = entry
            left = parts
        }

        deinit { close(fd) }

        /// - Returns: true for the last part of an undamaged file.
        func finishOne() -> Bool {
            lock.withLock {
                left -= 1; return left == 0 && !damaged
            }
        }

        /// - Returns: true the first time (the caller removes the file).
        func markDamaged() -> Bool {
            lock.withLock {
                defer { damaged = true }; return !damaged
            }
        }
    }
}
