import CLinux
import Foundation

/// An exclusive `flock` on a file that records the holder's pid. Kernel locks die with their process,
/// so a crashed agent never leaves one behind.
final class PidLock: @unchecked Sendable {
    let path: String
    private var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Takes the lock, waiting up to `wait` (nil: do not wait).
    /// - Returns: the lock, or the pid of the holder when it stayed busy.
    static func acquire(_ path: String, wait: Duration?) throws -> Result<PidLock, HolderPID> {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ShadowCopyError.lock("cannot open lock file \(path): \(String(cString: strerror(errno)))") }
        _ = fchmod(fd, 0o600)  // a file an older version made 0644: the holder's pid is nobody else's business
        let until = ContinuousClock.now + (wait ?? .zero)
        while true {
            if shadowmover_flock(fd, SHADOWMOVER_LOCK_EX | SHADOWMOVER_LOCK_NB) == 0 {
                ftruncate(fd, 0)
                let text = "\(getpid())\n"
                _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
                return .success(PidLock(path: path, fd: fd))
            }
            guard errno == EWOULDBLOCK || errno == EINTR else {
                let e = errno
                close(fd)
                throw ShadowCopyError.lock("cannot lock \(path): \(String(cString: strerror(e)))")
            }
            if ContinuousClock.now >= until {
                var buffer = [UInt8](repeating: 0, count: 32)
                let n = pread(fd, &buffer, 31, 0)
                close(fd)
                let pid = Int32(String(decoding: buffer[..<max(0, n)], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                return .failure(HolderPID(pid: pid))
            }
            usleep(20_000)
        }
    }

    struct HolderPID: Error { var pid: Int32 }

    func release() {
        guard fd >= 0 else { return }
        ftruncate(fd, 0)
        shadowmover_flock(fd, SHADOWMOVER_LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { release() }
}

/// Where the coordinator keeps its locks and records (overridable for tests and unusual hosts).
public struct CoordinatorPaths: Sendable {
    /// Lock files: the system-wide agent lock and one mark per volume. Default /run/shadowmover.
    public var runDirectory: String
    /// Records of shadow copies that exist, so kept and orphaned ones can be found. Default /var/lib/shadowmover.
    public var stateDirectory: String

    /// The default directories (`/run/shadowmover`, `/var/lib/shadowmover`) unless given or set in the environment.
    public init(runDirectory: String? = nil, stateDirectory: String? = nil) {
        let env = ProcessInfo.processInfo.environment
        self.runDirectory = runDirectory ?? env["SHADOWMOVER_RUN_DIR"] ?? "/run/shadowmover"
        self.stateDirectory = stateDirectory ?? env["SHADOWMOVER_STATE_DIR"] ?? "/var/lib/shadowmover"
    }

    var agentLock: String { "\(runDirectory)/agent.lock" }
    func volumeMark(_ v: Volume) -> String { "\(runDirectory)/volume-\(v.device.replacingOccurrences(of: ":", with: "-")).lock" }
    var shadowRecords: String { "\(stateDirectory)/shadows" }

    func ensure() throws {
        for d in [runDirectory, shadowRecords] {
            do { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) } catch {
                throw ShadowCopyError.lock("cannot create \(d): \(error.localizedDescription)")
            }
        }
    }
}
