import Foundation

/// Where a backup stands, as progress reports show it.
public struct ProgressEvent: Sendable, Codable {
    public var type = "progress"
    public var elapsedSeconds: Double
    public var bytesDone: UInt64
    /// Bytes found so far by the scanner; final once `scanComplete`.
    public var bytesTotal: UInt64
    public var filesDone: Int
    public var filesTotal: Int
    public var scanComplete: Bool
    public var bytesPerSecond: Double
    /// nil until the scan is complete and the rate is known.
    public var etaSeconds: Double?
    public var currentFile: String?
}

/// Counters the scanner and workers update (per read or per file, never per chunk) and a ticker
/// thread that reports them at an interval.
final class ProgressCounter: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var bytesDone: UInt64 = 0
    private var bytesTotal: UInt64 = 0
    private var filesDone = 0
    private var filesTotal = 0
    private var scanComplete = false
    private var currentFile: String?
    private var stopped = false
    private let started = ContinuousClock.now

    func found(bytes: UInt64) { lock.withLock { bytesTotal += bytes; filesTotal += 1 } }
    func read(_ bytes: Int) { lock.withLock { bytesDone += UInt64(bytes) } }
    func started(_ path: PathBytes) { lock.withLock { currentFile = path.description } }
    func finishedFile(unreadBytes: UInt64 = 0) { lock.withLock { filesDone += 1; bytesDone += unreadBytes } }
    func scanFinished() { lock.withLock { scanComplete = true } }

    func snapshot() -> ProgressEvent {
        lock.withLock {
            let elapsed = (ContinuousClock.now - started)
            let seconds = elapsed.seconds
            let rate = seconds > 0 ? Double(bytesDone) / seconds : 0
            let eta: Double? = scanComplete && rate > 0 ? Double(bytesTotal &- min(bytesDone, bytesTotal)) / rate : nil
            return ProgressEvent(
                elapsedSeconds: seconds, bytesDone: bytesDone, bytesTotal: bytesTotal, filesDone: filesDone, filesTotal: filesTotal,
                scanComplete: scanComplete, bytesPerSecond: rate, etaSeconds: eta, currentFile: currentFile)
        }
    }

    /// Calls `report` every `interval` until `stop`.
    func startTicker(interval: Duration, report: @escaping @Sendable (ProgressEvent) -> Void) {
        let t = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: interval.seconds)
                if lock.withLock({ stopped }) { return }
                report(snapshot())
            }
        }
        t.name = "progress"
        t.start()
    }

    func stop() { lock.withLock { stopped = true } }
}
